"""Trains the tiny problem (run directly or under torchrun); writes the final trainable weights
and the loss history to OUTDIR. Usage: train_worker.py OUTDIR BATCH_SIZE [EPOCHS]"""

import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_fixture import problem  # noqa: E402

from eager_llm.train import StageConfig, train_stage  # noqa: E402
from eager_llm.train.checkpoint import trainable_state  # noqa: E402

if __name__ == "__main__":
    torch.set_num_threads(1)
    output, batch_size = sys.argv[1], int(sys.argv[2])
    epochs = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    eager, tokenizer, samples = problem()
    config = StageConfig(epochs=epochs, lr=2e-3, batch_size=batch_size, checkpoint_every=2, max_length=128,
                         warmup_ratio=0.1, mixed_precision="no")
    result = train_stage(eager, tokenizer, samples, config, output, progress=False)
    if int(os.environ.get("RANK", "0")) == 0:
        from safetensors.torch import save_file

        save_file(trainable_state(eager), os.path.join(output, "final.safetensors"))
        with open(os.path.join(output, "history.json"), "w") as out:
            json.dump(result.history, out)
        with open(os.path.join(output, "seconds.json"), "w") as out:
            json.dump({"seconds": result.seconds, "earlier_seconds": result.earlier_seconds}, out)
