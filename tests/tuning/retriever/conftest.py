"""A small synthetic corpus (public and hr-only manuals, and one document nobody may read), ingested once, and
a bi-encoder trained on it once for the whole session (~1 minute on 2 shared cores)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers import write  # noqa: E402
from retriever_corpus import HR, PUBLIC, SECRET, Corpus, make_corpus  # noqa: E402

from ragtune.config import init_project  # noqa: E402
from ragtune.project import Project  # noqa: E402
from ragtune.tuning.retriever.biencoder import TrainedRetriever, train_biencoder  # noqa: E402
from ragtune.tuning.retriever.pairs import PairSet, generate_pairs  # noqa: E402


@pytest.fixture(scope="session")
def corpus_project(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    """An ingested project: 8 public manuals, 4 only group hr may read, one file with no ACL (readable by nobody)."""
    tmp = tmp_path_factory.mktemp("retriever")
    names = make_corpus(tmp / "docs", public=PUBLIC, hr=HR)
    write(tmp / "docs" / "memo.md", f"# Nobody memo\n\n{SECRET} It was filed without an ACL of any kind at all.\n")
    init_project(tmp / "project")
    Project.open(tmp / "project").ingest(tmp / "docs")
    return Corpus(tmp / "project", names)


@pytest.fixture(scope="session")
def pair_set(corpus_project: Corpus) -> PairSet:
    proj = Project.open(corpus_project.project)
    return generate_pairs(proj.store, proj.embedder, max_pairs=1000, seed=0)


@pytest.fixture(scope="session")
def trained(corpus_project: Corpus, pair_set: PairSet) -> TrainedRetriever:
    """``ret`` v1: eight steps of batch 8 (a quarter of the documents held out)."""
    proj = Project.open(corpus_project.project)
    return train_biencoder(proj.registry, "ret", pair_set, epochs=1.0, batch_size=8, learning_rate=1e-4,
                           max_length=64, holdout=0.25, seed=0, threads=2)


@pytest.fixture
def project_copy(corpus_project: Corpus, trained: TrainedRetriever, tmp_path: Path) -> Path:
    """A copy of the ingested project, holding the trained model, that a test may re-index."""
    shutil.copytree(corpus_project.project, tmp_path / "project")
    return tmp_path / "project"


@pytest.fixture(scope="session")
def labelled_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ingested project of the labelled corpus (hr-only payroll, leave, benefits; public FAQ and canteen; a memo
    nobody may read), for the labelled-query and feedback pairs. Tests that write copy it first."""
    from retriever_corpus import make_labelled_corpus

    tmp = tmp_path_factory.mktemp("labelled")
    make_labelled_corpus(tmp / "docs")
    init_project(tmp / "project")
    Project.open(tmp / "project").ingest(tmp / "docs")
    return tmp / "project"
