"""Run under torchrun: evaluates the shared tiny problem with the users sharded over ranks."""

import json
import os
import sys

import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from eval_fixture import problem  # noqa: E402

from eager_llm.evaluate import EvaluationConfig, evaluate  # noqa: E402

if __name__ == "__main__":
    dist.init_process_group("gloo")
    model, prompts, targets, trie = problem()
    result = evaluate(model, prompts, targets, trie, EvaluationConfig(num_beams=10, ks=(1, 5, 10), batch_size=3),
                      output_dir=sys.argv[1], progress=False)
    if dist.get_rank() == 0:
        with open(os.path.join(sys.argv[1], "items.json"), "w") as out:
            json.dump(result.items.tolist(), out)
    dist.destroy_process_group()
