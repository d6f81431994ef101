"""The photo rules of mlcore/familiarity.py (Neighbours: far, spread and the vote) tried offline on the
features and probabilities that `benchmarks/dont_know_photos.py --scores FILE` saved, without training
again: the lines are drawn on the validation photos as the site draws them; the test photos only report.

    .venv/bin/python benchmarks/dont_know_photos_offline.py FILE [--flag-share 4.5] [--kept 300] [--seeds 0 1 2]

One JSON line per seed (which training photos are kept, as fit_familiarity picks them) and rule: the
rule before the vote (far at the 97.5th percentile and spread, no labels), the vote of the kept photos
("kept_vote": what a model whose base was fine-tuned gets) and the vote of every training photo ("every_vote":
the product's rule for a frozen base, whose training hands over every training photo's features).
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import mlcore.familiarity as familiarity  # noqa: E402
from mlcore.familiarity import Neighbours, judge  # noqa: E402

OTHER = ("train", "val", "test", "flower_jpg")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scores")
    parser.add_argument("--flag-share", type=float, default=familiarity.FLAG_SHARE,
                        help="for the kept photos' vote (every photo's: EVERY_FLAG_SHARE)")
    parser.add_argument("--kept", type=int, default=300, help="training photos kept (the site keeps 300 at 224)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    familiarity.FLAG_SHARE = args.flag_share
    data = np.load(args.scores)
    kinds = [str(kind) for kind in data["kinds"] if kind not in OTHER]
    features = {str(kind): data[f"{kind}_features"] for kind in data["kinds"]}
    probabilities = {str(kind): data[f"{kind}_probabilities"] for kind in data["kinds"]}
    wrong = probabilities["test"].argmax(axis=1) != data["test_labels"]
    for seed in args.seeds:
        picked = np.sort(np.random.default_rng(seed).permutation(len(features["train"]))[:args.kept])
        every = {"voters": features["train"], "voter_labels": data["train_labels"]}
        for rule, labels, voting in (("before", None, {}), ("kept_vote", data["train_labels"][picked], {}),
                                     ("every_vote", data["train_labels"][picked], every)):
            neighbours = Neighbours.fit(features["train"][picked], features["val"], probabilities["val"], seed=seed,
                                        labels=labels, **voting)
            if labels is None:  # the far line before the vote
                neighbours.far_above = float(np.percentile(neighbours.distances(features["val"]), 97.5))
            doubts = {kind: np.array([j.doubt for j in judge(probabilities[kind], neighbours.distances(features[kind]),
                                                             neighbours, features[kind])])
                      for kind in ["val", "test", *kinds]}
            test = doubts["test"]
            print(json.dumps({
                "seed": seed, "rule": rule, "kept": len(picked),
                "flag_share": familiarity.EVERY_FLAG_SHARE if voting else args.flag_share,
                "val_flagged": round(float(np.mean(doubts["val"] != "")), 3),
                "test_flagged": round(float(np.mean(test != "")), 3),
                "wrong_flagged": round(float(np.mean(test[wrong] != "")), 3),
                "wrong_by_doubt": {d: int((test[wrong] == d).sum()) for d in ("far", "spread", "unlike")},
                "unfamiliar_flagged": round(float(np.mean(np.concatenate([doubts[k] != "" for k in kinds]))), 3),
                "real_photos_flagged": int((doubts.get("real_photos", np.array([])) != "").sum()),
                "vote_above": None if not np.isfinite(neighbours.vote_above) else round(neighbours.vote_above, 4),
            }))


if __name__ == "__main__":
    main()
