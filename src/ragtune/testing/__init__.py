"""Contract suites shipped in the package, so a backend or classifier outside ragtune can prove it conforms.

- :mod:`ragtune.testing.store`: the :class:`~ragtune.store.base.Store` conformance suite as pytest mixins
  (``StoreConformanceSuite`` and its parts); a backend subclasses it and overrides the ``store`` fixture.
- :mod:`ragtune.testing.store_bulk`: ``BulkLoadTest``, ``Store.bulk_load`` (same results as plain writes, ACLs
  inside, nothing lost on an error inside).
- :mod:`ragtune.testing.store_properties`: ``AclLeakagePropertyTest``, the ACL-leakage property (hypothesis).
- :mod:`ragtune.testing.classifier`: scikit-learn-style checks for a
  :class:`~ragtune.tuning.base.TextClassifier` (``classifier_checks``, ``parametrize_with_checks``).

The suites need pytest, and the property test hypothesis: both come with the ``dev`` extra
(``pip install ragtune[dev]``). No suite needs ragtune's embedding model: vectors are seeded random unit
vectors. This package imports none of them; under pytest it asks for their asserts to be rewritten, so a
failing check shows the values it compared.
"""

try:
    import pytest
except ImportError:  # pragma: no cover - only the suites need pytest
    pass
else:
    pytest.register_assert_rewrite("ragtune.testing.store", "ragtune.testing.store_bulk",
                                   "ragtune.testing.store_properties", "ragtune.testing.classifier")

__all__: list[str] = []
