"""The seed notes' claims about the Gumbel trick, checked numerically with the library.

1. Gumbel-max on log p samples Categorical(p); adding the noise to p itself (seed 004's wrong
   variant) does not. Frequencies and chi-square p-values for the seed notes' two distributions.
2. Gumbel-softmax y = softmax((log p + g)/τ) approaches one-hot as τ → 0: the mean of its
   largest component versus τ. Seed 004 prints the formula with τ dividing exp(·) instead of
   the exponent, where τ cancels; that variant is tabulated too.
3. "Smaller τ: the gradients vanish more" (seed 000): per-sample gradients of y·q with respect
   to the logits, for a fixed q, versus τ (median and mean norm, total variance, bias).

Usage (from the repository root): python experiments/gumbel_trick/run.py
Writes results.md, frequencies.csv, temperature.csv and gumbel_trick.png next to this file.
"""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from scipy import stats

from rlgumbel.diagnostics import estimator_statistics, logit_gradients
from rlgumbel.selectors import GumbelSoftmaxSelector, gumbel_max_sample, gumbel_noise

HERE = Path(__file__).resolve().parent
DISTRIBUTIONS = {
    "seed004_4": [0.3, 0.1, 0.1, 0.5],
    "seed004_5": [0.02948882, 0.08015893, 0.21789455, 0.5922988, 0.08015893],
}
DRAWS = 1_000_000
TEMPERATURES = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0]
GRADIENT_DRAWS = 100_000
# The fixed linear objective f(y) = y·Q of part 3 (5 actions, the seed's 5-action distribution).
Q = [0.5, -1.0, 2.0, 1.0, -0.5]


class OneStateCritic:
    """Q(s, y) = y·Q for a batch of copies of one state."""

    def __init__(self, q: torch.Tensor, rows: int) -> None:
        self.q = q.expand(rows, -1)

    def of(self, action: torch.Tensor) -> torch.Tensor:
        return (action * self.q).sum(-1)

    def all(self) -> torch.Tensor:
        return self.q


def frequencies(generator: torch.Generator) -> list[dict]:
    rows = []
    for name, p in DISTRIBUTIONS.items():
        probs = torch.tensor(p, dtype=torch.float64)
        probs = probs / probs.sum()  # the 5-action list sums to 1 + 3e-8
        logits = probs.log().float().expand(DRAWS, -1)
        right = gumbel_max_sample(logits, generator)
        wrong = (probs.float() + gumbel_noise(logits.shape, generator, torch.float32)).argmax(-1)
        counts = {
            kind: torch.bincount(a, minlength=len(p)).double()
            for kind, a in (("log_p_plus_g", right), ("p_plus_g", wrong))
        }
        pvalues = {kind: stats.chisquare(c.numpy(), (DRAWS * probs).numpy()).pvalue for kind, c in counts.items()}
        for action in range(len(p)):
            rows.append(
                {
                    "distribution": name,
                    "action": action,
                    "p": probs[action].item(),
                    "freq_log_p_plus_g": counts["log_p_plus_g"][action].item() / DRAWS,
                    "freq_p_plus_g": counts["p_plus_g"][action].item() / DRAWS,
                    "chi2_pvalue_log_p_plus_g": pvalues["log_p_plus_g"],
                    "chi2_pvalue_p_plus_g": pvalues["p_plus_g"],
                }
            )
    return rows


def temperature_sweep(generator: torch.Generator) -> list[dict]:
    probs = torch.tensor(DISTRIBUTIONS["seed004_5"], dtype=torch.float64)
    logits = (probs / probs.sum()).log()
    q = torch.tensor(Q, dtype=torch.float64)
    obs = torch.zeros(1, 1, dtype=torch.float64)
    selector = GumbelSoftmaxSelector(hard=False)
    rows = []
    for temperature in TEMPERATURES:
        y = selector.select(logits.expand(DRAWS, -1), temperature, generator).action
        largest = y.amax(-1)
        # Seed 004 as printed: (exp(a_i)/t) / Σ_j (exp(a_j)/t), a = log p + g; t cancels.
        perturbed = logits + gumbel_noise(torch.Size([DRAWS, 5]), generator, torch.float64)
        printed = (perturbed.exp() / temperature) / (perturbed.exp() / temperature).sum(-1, keepdim=True)
        exact, estimates = logit_gradients(
            logits[None], obs, lambda o: OneStateCritic(q, o.shape[0]), selector, temperature, generator, GRADIENT_DRAWS
        )
        estimates = estimates[:, 0]  # [M, A]: one state
        norms = estimates.norm(dim=-1)
        summary = estimator_statistics(estimates, exact[0])
        rows.append(
            {
                "temperature": temperature,
                "mean_largest_component": largest.mean().item(),
                "fraction_largest_above_0.99": (largest > 0.99).double().mean().item(),
                "mean_largest_seed004_as_printed": printed.amax(-1).mean().item(),
                "exact_grad_norm": summary["estimator/exact_norm"],
                "median_grad_norm": norms.median().item(),
                "mean_grad_norm": summary["estimator/grad_norm"],
                "fraction_grad_below_1e-3_exact": (norms < 1e-3 * summary["estimator/exact_norm"])
                .double()
                .mean()
                .item(),
                "total_variance": summary["estimator/variance"],
                "relative_bias": summary["estimator/relative_bias"],
                "relative_standard_error": summary["estimator/relative_standard_error"],
                "cosine": summary["estimator/cosine"],
            }
        )
    return rows


def pvalue_text(pvalue: float) -> str:
    """`=0.27`, or `<1e-300` where the p-value underflows to 0."""
    return "<1e-300" if pvalue == 0 else f"={pvalue:.2g}"


def write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def markdown_table(rows: list[dict], columns: list[str], formats: dict[str, str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(format(row[c], formats.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def figure(freq_rows: list[dict], temp_rows: list[dict], path: Path) -> None:
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.2))
    for ax, name in zip(axes[:2], DISTRIBUTIONS):
        rows = [r for r in freq_rows if r["distribution"] == name]
        x = torch.arange(len(rows)).numpy()
        ax.bar(x - 0.27, [r["p"] for r in rows], 0.27, label="p")
        ax.bar(
            x,
            [r["freq_log_p_plus_g"] for r in rows],
            0.27,
            label=f"argmax(log p + g), χ² p{pvalue_text(rows[0]['chi2_pvalue_log_p_plus_g'])}",
        )
        ax.bar(
            x + 0.27,
            [r["freq_p_plus_g"] for r in rows],
            0.27,
            label=f"argmax(p + g), χ² p{pvalue_text(rows[0]['chi2_pvalue_p_plus_g'])}",
        )
        ax.set(title=f"{name}: frequencies of {DRAWS:,} draws", xlabel="action", ylabel="frequency")
        ax.legend(fontsize=7)
    taus = [r["temperature"] for r in temp_rows]
    ax = axes[2]
    ax.plot(taus, [r["mean_largest_component"] for r in temp_rows], "o-", label="softmax((log p + g)/τ)")
    ax.plot(
        taus, [r["mean_largest_seed004_as_printed"] for r in temp_rows], "s--", label="seed 004 as printed (τ cancels)"
    )
    ax.set(xscale="log", title="mean largest component of y", xlabel="temperature τ", ylim=(0, 1.05))
    ax.legend(fontsize=7)
    ax = axes[3]
    ax.plot(taus, [r["median_grad_norm"] for r in temp_rows], "o-", label="median |∇| per sample")
    ax.plot(taus, [r["mean_grad_norm"] for r in temp_rows], "s-", label="mean |∇| per sample")
    ax.plot(taus, [r["total_variance"] ** 0.5 for r in temp_rows], "^-", label="sqrt(total variance)")
    ax.axhline(temp_rows[0]["exact_grad_norm"], color="k", ls=":", label="|exact gradient|")
    # The median falls to ~1e-43 at τ = 0.01 (see the table); the axis stops at 1e-6.
    ax.set(xscale="log", yscale="log", ylim=(1e-6, 30), title="gradient of y·q w.r.t. logits", xlabel="temperature τ")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    freq_rows = frequencies(generator)
    temp_rows = temperature_sweep(generator)
    write_csv(HERE / "frequencies.csv", freq_rows)
    write_csv(HERE / "temperature.csv", temp_rows)
    figure(freq_rows, temp_rows, HERE / "gumbel_trick.png")
    shown = [
        {**r, "chi2_pvalue_p_plus_g": "<1e-300" if r["chi2_pvalue_p_plus_g"] == 0 else r["chi2_pvalue_p_plus_g"]}
        for r in freq_rows
    ]
    freq_table = markdown_table(
        shown,
        list(freq_rows[0]),
        {"p": ".5f", "freq_log_p_plus_g": ".5f", "freq_p_plus_g": ".5f", "chi2_pvalue_log_p_plus_g": ".3g"},
    )
    temp_table = markdown_table(temp_rows, list(temp_rows[0]), dict.fromkeys(temp_rows[0], ".4g"))
    (HERE / "results.md").write_text(
        "# Gumbel trick: results\n\n"
        f"Generated by `python experiments/gumbel_trick/run.py` (seed 0).\n\n"
        f"## Frequencies of {DRAWS:,} draws\n\n{freq_table}\n\n"
        f"## Gumbel-softmax versus temperature (seed004_5, {DRAWS:,} relaxed samples; "
        f"gradients of y·q, q = {Q}, from {GRADIENT_DRAWS:,} samples)\n\n{temp_table}\n"
    )
    print(freq_table, temp_table, sep="\n\n")


if __name__ == "__main__":
    main()
