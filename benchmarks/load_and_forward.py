"""The yardstick of ``edit --json``'s cold start: import torch and transformers, load the shipped model with
transformers and run one forward pass. Run beside the CLI with farm-bench (docs/performance.md):

    OMP_NUM_THREADS=1 farm-bench -n 7 --vs 'python benchmarks/load_and_forward.py' -- \\
        python -m sss_core edit --editor ft-l --prompt "The capital of France is" --subject France --target Rome --json
"""

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from sss_core.models import DEFAULT_MODEL

torch.set_num_threads(1)
tok = AutoTokenizer.from_pretrained(DEFAULT_MODEL)
model = AutoModelForCausalLM.from_pretrained(DEFAULT_MODEL)
with torch.no_grad():
    print(model(**tok("The capital of France is", return_tensors="pt")).logits.shape)
