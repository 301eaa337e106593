"""Pure background: does the excess after a cut scatter as N(0, 1)?

Replicas of a signal region without signal: data, a 4x reference and a test background, all
drawn from the LHCO-like generator's background in 3.3-3.7 TeV. A classifier ensemble learns data
against reference (as IAD, CATHODE and SIGMA do), scores the data out of fold, and each fold is
cut at eps_B on its share of the test background. Printed per variant: mean and width of Z over
replicas and scipy's KS p-value against N(0, 1).

Variants: the excess error with and without the cut's own uncertainty (``poisson`` is
(N_sel - expected) / sqrt(expected), the error the scan first reported).

    python benchmarks/anomaly_null_excess.py [--replicas 60] [--eps 0.05] [--data-over-test 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import stats

from twinflow.anomaly import metrics
from twinflow.anomaly.classifiers import ClassifierEnsemble
from twinflow.anomaly.simulation import LHCOLikeGenerator


def region_background(gen: LHCOLikeGenerator, n: int, rng: np.random.Generator) -> np.ndarray:
    """Return n background feature vectors with 3.3 < m_JJ < 3.7 TeV."""
    out, have = [], 0
    while have < n:
        events = gen.background(200_000, rng)
        keep = events.x[(events.m > 3.3) & (events.m < 3.7)]
        out.append(keep)
        have += len(keep)
    return np.concatenate(out)[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=60)
    parser.add_argument("--n-data", type=int, default=12_000)
    parser.add_argument("--data-over-test", type=float, default=5.0)
    parser.add_argument("--eps", type=float, default=0.05, help="background efficiency of the cut")
    parser.add_argument("--models", type=int, default=3)
    parser.add_argument("--max-iter", type=int, default=100)
    args = parser.parse_args()
    gen = LHCOLikeGenerator()
    n_test = int(args.n_data / args.data_over_test)
    z = {"full": [], "poisson": []}
    start = time.process_time()
    for r in range(args.replicas):
        rng = np.random.default_rng(5000 + r)
        reference = region_background(gen, 4 * args.n_data, rng)
        data = region_background(gen, args.n_data, rng)
        test = region_background(gen, n_test, rng)
        ens = ClassifierEnsemble(n_models=args.models, max_iter=args.max_iter, seed=r)
        ens.fit(reference, data)
        by_fold = np.stack([ens.predict_fold(test, k) for k in range(ens.n_folds)])
        res = metrics.selected_excess_by_group(
            by_fold, ens.out_of_fold, ens.positive_fold, np.zeros(len(data)), args.eps
        )
        z["full"].append(res["excess_significance"])
        z["poisson"].append((res["selected"] - res["expected"]) / np.sqrt(res["expected"]))
    print(
        f"{args.replicas} replicas, data {args.n_data}, test {n_test}, eps_B {args.eps}: "
        f"{time.process_time() - start:.0f} CPU s"
    )
    for name, values in z.items():
        values = np.asarray(values)
        print(
            f"{name:8s} mean {values.mean():+.3f} +- {values.std() / np.sqrt(len(values)):.3f}"
            f"  sd {values.std():.3f}  KS p {stats.kstest(values, 'norm').pvalue:.3g}"
        )


if __name__ == "__main__":
    main()
