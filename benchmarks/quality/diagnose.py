"""Where a finished quality run loses: the beam search, or the model's fit?

    python benchmarks/quality/diagnose.py runs/quality/beauty/seed0/full [--users 1000] [--beams 20 50 100]

On the same seeded random users, prints Recall@1/10 and NDCG@10 of the run's final recommender
(1) on the test targets at each beam width: if wider beams find more targets, the search prunes
them; (2) on each user's last training target (history and target seen in training) beside
the test target: a model that scores its own training targets no better than new ones
underfits, one that scores them much better does not generalize.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os

import torch

from eager_llm.evaluate import EvaluationConfig, evaluate
from eager_llm.model import Recommender
from eager_llm.pipeline import RunDir, resolve_values, steps
from eager_llm.tasks import evaluation_prompt_ids

SHOWN = ("recall@1", "recall@10", "ndcg@10")


def scores(recommender: Recommender, samples, config: EvaluationConfig) -> str:
    prompts = evaluation_prompt_ids(samples, recommender.index.item_strings(), recommender.tokenizer)
    result = evaluate(recommender.eager.lm, prompts, [sample.target - 1 for sample in samples], recommender.trie,
                      config, progress=False)
    return ", ".join(f"{name} {result.metrics[name]:.4f}" for name in SHOWN)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a finished run folder")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--beams", type=int, nargs="+", default=[20, 50, 100])
    parser.add_argument("--stage", choices=steps.STAGES, default=steps.STAGES[-1])
    args = parser.parse_args()
    with open(os.path.join(args.run, "config.json"), encoding="utf-8") as handle:
        run = RunDir(args.run, resolve_values(json.load(handle)))
    steps.require_current(run, args.stage)
    _, split = steps.checked_data(run)
    recommender = Recommender.from_pretrained(run.file(args.stage, "recommender"))
    draw = torch.randperm(len(split.test), generator=torch.Generator().manual_seed(1))[:args.users]
    test = [split.test[i] for i in sorted(draw.tolist())]
    last_training = {sample.user: sample for sample in split.train}  # training samples run in order
    base = steps.evaluation_config(run, recommender)

    def config(beams: int) -> EvaluationConfig:  # the batch shrinks as the beams widen, to keep memory level
        return dataclasses.replace(base, num_beams=beams, ks=(1, 10), batch_size=max(1, base.batch_size * 20 // beams))

    print(f"{args.run} ({args.stage}), {len(test)} random test users")
    for beams in args.beams:
        print(f"test targets, {beams} beams: {scores(recommender, test, config(beams))}", flush=True)
    trained = [last_training[sample.user] for sample in test if sample.user in last_training]
    print(f"last training targets of the same {len(trained)} users, {base.num_beams} beams: "
          f"{scores(recommender, trained, config(base.num_beams))}")


if __name__ == "__main__":
    main()
