"""The commented ``ragtune.yaml`` that ``ragtune init`` writes: every setting with its default and what it does."""

CONFIG_TEMPLATE = """\
# ragtune project settings. Every key can be overridden by an environment variable:
# RAGTUNE_<SECTION>__<KEY>, e.g. RAGTUNE_RETRIEVAL__TOP_K=5. Never put secrets in this file.

# Where the index lives (LanceDB: vectors, BM25 full-text index, ACL columns), relative to this file.
store_path: index
store:
  kind: lance          # the embedded LanceDB store (vectors, BM25, ACL columns, sync state) in store_path
                       # postgres: PostgreSQL + pgvector (docs/postgres.md); the DSN from RAGTUNE_STORE_DSN
# Where trained classifiers are registered (one folder per model, one sub-folder per version).
models_path: models

embedder:
  model: minilm        # packaged all-MiniLM-L6-v2 (384-d, offline), or registry:NAME[@VERSION] (tune retriever)
  batch_size: 32
  threads: 2           # CPU threads for the model; keep at or below the machine's cores
  runtime: auto        # onnx (ONNX export on onnxruntime, ~2.5x faster per query), torch, or auto (onnx if installed)

ingest:
  max_file_mb: 20      # larger files are reported and skipped
  follow_external_links: false  # links to files outside the ingested folders are skipped (true: follow them)
  keep_missing_roots: false     # a deleted or moved folder's documents are removed at the next sync

chunking:
  max_tokens: 256      # token budget per chunk; with the title > section line it also fits the embedder's 256
  overlap_tokens: 32   # tokens repeated from the end of the previous chunk, at sentence boundaries

generator:
  kind: extractive     # extractive (quotes sources, no model), llamacpp (local SmolLM2), openai (any compatible API)
  base_url: ""         # openai kind: e.g. https://api.openai.com/v1 or http://127.0.0.1:8080/v1
  model: ""            # openai kind: the model name the endpoint expects
  api_key_env: RAGTUNE_LLM_API_KEY  # the key: this variable, a file named by RAGTUNE_LLM_API_KEY_FILE, or
                                    # ~/.config/ragtune/secrets.yaml — never this file
  max_tokens: 256

retrieval:
  top_k: 8             # hits returned after fusion
  lexical_k: 100       # BM25 candidates
  dense_k: 100         # vector candidates
  rrf_k: 20            # reciprocal rank fusion constant (20 was best on SciFact train queries)
  lexical_weight: 1.0
  dense_weight: 1.0
  # lexical_isolation: true  # BM25 statistics over each user's readable chunks only (hides hidden-term IDF)

rerank:
  kind: none           # none (the fused order is final) or registry:NAME, from `ragtune tune reranker`
  candidates: 10       # fused hits the reranker reorders (its cost grows with them)
  fused_weight: 1.0    # weight of the fused order beside the reranker's (0: the reranker's order alone)
  skip_when_agree: true  # no reranking when BM25 and dense search put the same chunk first

answer:
  kind: extractive     # extractive: quote supporting sentences; reader: the exact span a `tune reader` model finds
  # reader: policy-reader@1  # the span reader (kind: reader), NAME or NAME@VERSION from `ragtune tune reader`
  # reader_min_score: 0.0    # abstain below this span score; default: the reader's calibrated threshold
  min_relevance: 0.35  # abstain when no accessible chunk is at least this similar (cosine) to the question
  max_sentences: 3     # at most this many sentences in an extractive answer
  min_sentence_score: 0.40  # abstain when no accessible sentence scores this high (cosine + term overlap)
  support_margin: 0.05 # a further sentence is quoted only within this of the best, adding a question term
  context_chunks: 4    # top chunks the answer may quote from

# Tamper-evident audit log of `ask` and `run` (hash-chained JSONL; `ragtune audit verify`, docs/audit.md).
# Document text and answers are never logged, only chunk ids and document hashes.
audit:
  enabled: true
  path: audit/audit.jsonl  # relative to this file; created 0600 in a 0700 folder
  questions: hash      # hash: only each question's SHA-256 (privacy, the default); text: the question itself

# Answer cache of `ask` (docs/cache.md): keyed by the asker's effective ACL tokens, the index version, these
# settings and the model versions; any ingest or sync invalidates it. Off by default.
cache:
  enabled: false
  max_entries: 1000    # least recently used entries are dropped beyond this
  ttl_s: 600           # an entry is served for at most this many seconds
  semantic: false      # true: also serve a cached answer whose question embedding is this close (same key only)
  semantic_threshold: 0.95  # cosine similarity a semantic hit needs

# The service (`ragtune keys`, and the coming `ragtune serve`): API keys and OIDC bearer tokens (docs/service.md).
# service:
#   host: 127.0.0.1
#   port: 8000
#   keys_path: service/keys.sqlite    # API keys, stored as SHA-256 hashes (file mode 0600)
#   oidc_issuer: https://login.example.com/realms/acme  # empty (the default): OIDC tokens are not accepted
#   oidc_audience: ragtune            # required with an issuer: the client id tokens must be issued to
#   oidc_jwks_url: ""                 # empty: the jwks_uri of the issuer's discovery document
#   oidc_algorithms: [RS256, ES256]   # asymmetric only; none and HS* are refused
#   oidc_leeway_s: 60                 # clock skew allowed on exp, nbf and iat
#   oidc_user_claim: sub              # or preferred_username, email
#   oidc_groups_claim: groups         # a list claim; dotted paths such as realm_access.roles work
#   oidc_role_claim: ""               # a claim holding reader/editor/admin; empty: everyone gets the default
#   oidc_default_role: reader
#   max_upload_mb: 20                 # one document uploaded with POST /v1/documents (413 beyond it)
#   rate_limit_per_minute: 120        # requests per credential a minute (429 with Retry-After beyond it)
#   request_timeout_s: 60             # a request with no response by then gets 504

# Traces, metrics and logs of `ragtune serve` (docs/observability.md); /metrics is always on.
# observability:
#   otlp_endpoint: http://127.0.0.1:4318/v1/traces  # empty (the default): no OpenTelemetry spans exported
#   service_name: ragtune
#   log_format: text                  # json: one JSON object per line, with the request id
#   include_text: false               # true: questions and document text may appear in spans (never by default)

# Outbound connections (docs/deployment.md): only loopback and the destinations configured above are allowed.
security:
  egress: allowlist    # off: no in-process egress guard
  egress_allow: []     # more destinations: host, IP, CIDR, host:port or URL
"""
