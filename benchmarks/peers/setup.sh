#!/usr/bin/env bash
# Creates the peers' benchmark environment (LlamaIndex, Haystack 2.x, SetFit), separate from ragtune's .venv.
#   bash benchmarks/peers/setup.sh            # -> .bench/peers-venv
#   PEERS_VENV=/some/where bash benchmarks/peers/setup.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
here=benchmarks/peers
venv=${PEERS_VENV:-.bench/peers-venv}
py=${PY:-python3}
mkdir -p .bench
[ -f .bench/.gitignore ] || printf '# benchmark caches (corpus files, indexes, logs): never commit\n*\n' > .bench/.gitignore
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
# torch first, pinned: pip takes the CPU build from local disk, so nothing later pulls a CUDA build.
"$venv/bin/pip" install -q torch==2.13.0
"$venv/bin/pip" install -q -c "$here/constraints.txt" -r "$here/requirements.txt"
"$venv/bin/python" - <<'PY'
import sys

import torch

if torch.version.cuda is not None:
    sys.exit(f"the peers venv has a CUDA torch ({torch.__version__}); remove it and run setup.sh again")
import haystack, llama_index.core, setfit  # noqa: E401,F401  (all import)
print(f"peers venv ready: torch {torch.__version__}, llama-index-core {llama_index.core.__version__}, "
      f"haystack-ai {haystack.__version__}, setfit {setfit.__version__}")
PY
