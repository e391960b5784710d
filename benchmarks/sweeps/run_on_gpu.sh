#!/bin/bash
# usage: benchmarks/sweeps/run_on_gpu.sh GRID WORKERS SECONDS   (model and data under .gpu/, see banking77_sweep.py)
set -u
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.used --format=csv
python3 -c "import torch, transformers; print(torch.__version__, transformers.__version__)"
for w in $(seq 0 $(($2-1))); do
  timeout $3 python3 benchmarks/banking77_sweep.py --model-dir .gpu/model --data .gpu/data --configs $1 \
    --worker $w --workers $2 --out $OUT/results.jsonl --logits /tmp/lg > /tmp/w$w.log 2>&1 &
done
wait
tail -3 /tmp/w0.log
python3 -c "
import numpy as np, glob, os
d = {os.path.basename(f)[:-4]: np.load(f) for f in glob.glob('/tmp/lg/*.npy')}
np.savez_compressed('$OUT/logits.npz', **d); print(len(d), 'logits')"
wc -l $OUT/results.jsonl
