"""Does TLR ever make an inner optimizer go the wrong way? Many small runs, each rule beside the bare inner.

For every torch.optim optimizer below (at its usual rate, ×10 and ×100), four small deterministic
problems (a rank-one least squares, an ill-conditioned quadratic with curvatures 1e-2…10, a logistic
regression, Rosenbrock), window lengths K = 1, 2, 3, 6, with and without the loss observed
(``step(closure)`` or a plain ``step()``), the script runs the bare inner optimizer and ``TLR(inner)`` for
100 steps and compares the losses after 20 and after 100 steps. It prints, per rule:

* **wrong way**: runs whose loss ended at or above where it started (or non-finite) although the bare
  inner optimizer, same rate, went down. This is what a wrapper must never do (PyTorch's own optimizer
  tests check that 20 steps go the right way).
* the median of log10(TLR's loss / the bare inner's), and the share of runs where TLR ended lower.

The problems are tiny and the windows short on purpose: it is where the K-step rules are weakest.

    python benchmarks/rule_stress.py [--rules robust paper] [--quick]
    python benchmarks/rule_stress.py --torch-table [--seeds 1-10]   # torch's own optim_db test, many seeds
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch

from ntlr import TLR

Problem = tuple[list[torch.nn.Parameter], Callable[[], torch.Tensor]]

INNERS: dict[str, tuple[type[torch.optim.Optimizer], dict[str, float]]] = {
    "SGD": (torch.optim.SGD, {"lr": 1e-2}),
    "SGD(m=0.9)": (torch.optim.SGD, {"lr": 1e-2, "momentum": 0.9}),
    "Adam": (torch.optim.Adam, {"lr": 1e-3}),
    "AdamW": (torch.optim.AdamW, {"lr": 1e-3}),
    "Adagrad": (torch.optim.Adagrad, {"lr": 1e-2}),
    "RMSprop": (torch.optim.RMSprop, {"lr": 1e-2}),
    "NAdam": (torch.optim.NAdam, {"lr": 2e-3}),
    "RAdam": (torch.optim.RAdam, {"lr": 1e-3}),
    "Adamax": (torch.optim.Adamax, {"lr": 2e-3}),
    "Adadelta": (torch.optim.Adadelta, {"lr": 1.0}),
    "ASGD": (torch.optim.ASGD, {"lr": 1e-2}),
    "Rprop": (torch.optim.Rprop, {"lr": 1e-2}),
}


def _rank_one(g: torch.Generator) -> Problem:
    w = torch.nn.Parameter(torch.randn(10, 5, generator=g))
    b = torch.nn.Parameter(torch.randn(10, generator=g))
    x = torch.randn(5, generator=g)
    return [w, b], lambda: (w.mv(x) + b).pow(2).sum()


def _ill_conditioned(g: torch.Generator) -> Problem:
    q = torch.linalg.qr(torch.randn(20, 20, generator=g))[0]
    hessian = q @ torch.diag(torch.logspace(-2, 1, 20)) @ q.T
    w = torch.nn.Parameter(torch.randn(20, generator=g))
    return [w], lambda: 0.5 * w @ hessian @ w


def _logistic(g: torch.Generator) -> Problem:
    x = torch.randn(64, 10, generator=g)
    y = (x[:, 0] > 0).long()
    w = torch.nn.Parameter(torch.zeros(10, 2))
    return [w], lambda: torch.nn.functional.cross_entropy(x @ w, y)


def _rosenbrock(g: torch.Generator) -> Problem:
    w = torch.nn.Parameter(torch.tensor([-1.5, 2.0]))
    return [w], lambda: (1 - w[0]) ** 2 + 100 * (w[1] - w[0] ** 2) ** 2


PROBLEMS: dict[str, Callable[[torch.Generator], Problem]] = {
    "rank-one least squares": _rank_one,
    "ill-conditioned quadratic": _ill_conditioned,
    "logistic regression": _logistic,
    "Rosenbrock": _rosenbrock,
}
CHECKPOINTS = (20, 100)


def _problem(name: str) -> Problem:
    return PROBLEMS[name](torch.Generator().manual_seed(list(PROBLEMS).index(name) + 1))


def _step(opt: torch.optim.Optimizer, closure: Callable[[], torch.Tensor], closure_step: bool) -> None:
    """One step the way torch's tests take it: through the closure (the loss observed), or after it."""
    if closure_step:
        opt.step(closure)
    else:
        closure()
        opt.step()


def _losses(
    name: str, build: Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer], closure_step: bool
) -> dict[int, float]:
    params, loss_fn = _problem(name)
    opt = build(params)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    out = {0: closure().item()}
    for step in range(1, max(CHECKPOINTS) + 1):
        _step(opt, closure, closure_step)
        if step in CHECKPOINTS:
            with torch.no_grad():
                out[step] = loss_fn().item()
    return out


def torch_table_cases() -> list[tuple[str, type[torch.optim.Optimizer], dict[str, Any], bool]]:
    """Every (optimizer, setting) of torch's own optim_db on the CPU: (name, class, kwargs, whether its
    step needs a closure). ImportError where torch's test helpers are missing (they need expecttest)."""
    from torch.testing._internal.common_optimizers import optim_db

    cases = []
    for info in optim_db:
        if info.only_supports_sparse_grads or info.optim_cls.__name__ == "Muon":  # Muon: 2-D params only
            continue
        for optim_input in info.optim_inputs_func(device="cpu", dtype=torch.float32):
            kwargs = dict(optim_input.kwargs)
            if kwargs.get("capturable"):  # CUDA-only in torch itself
                continue
            name = f"{info.optim_cls.__name__}-{optim_input.desc}"
            cases.append((name, info.optim_cls, kwargs, info.step_requires_closure))
    return cases


def torch_problem(seed: int) -> tuple[torch.nn.Parameter, torch.nn.Parameter, torch.Tensor]:
    """The problem torch's optimizer tests train: ``W`` (10×5), ``b`` (10) and ``x`` (5), drawn in that
    order after ``torch.manual_seed(seed)``; the loss is ``(W x + b)²`` summed (:func:`problem_closure`)."""
    torch.manual_seed(seed)
    return torch.nn.Parameter(torch.randn(10, 5)), torch.nn.Parameter(torch.randn(10)), torch.randn(5)


def problem_closure(
    opt: torch.optim.Optimizer, weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor
) -> Callable[[], torch.Tensor]:
    """A closure that zeroes ``opt``'s gradients and returns the problem's loss with its gradients."""

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (weight.mv(x) + bias).pow(2).sum()
        loss.backward()
        return loss

    return closure


def right_direction_losses(
    cls: type[torch.optim.Optimizer],
    kwargs: dict[str, Any],
    update_every: int,
    closure_step: bool,
    *,
    seed: int = 0,
    rule: str = "robust",
) -> tuple[float, float]:
    """torch's test_forloop_goes_right_direction with TLR around the optimizer: the loss (Wx + b)^2 before
    and after 20 steps (NaN after, where a step raised)."""
    weight, bias, x = torch_problem(seed)
    opt = TLR(cls([weight, bias], **kwargs), update_every=update_every, rule=rule)
    closure = problem_closure(opt, weight, bias, x)
    initial = closure().item()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's own notes on some settings
        try:
            for _ in range(20):
                _step(opt, closure, closure_step)
        except RuntimeError:
            return initial, math.nan
    return initial, closure().item()


def torch_table(rules: list[str], seeds: list[int], windows: tuple[int, ...] = (1, 2, 3, 5, 10)) -> None:
    """torch's test_forloop_goes_right_direction (20 steps on (Wx + b)^2 lower the loss, raise it under
    maximize) with TLR around each case, at each K, stepping with and without a closure, at each seed:
    one seed's count is a lottery at K = 1-2, many seeds' is the rule's."""
    try:
        cases = torch_table_cases()
    except ImportError as error:
        raise SystemExit(f"--torch-table needs torch's optim_db ({error}); pip install expecttest") from None
    print(f"torch's optim_db: {len(cases)} cases × K {windows} × step/closure × seeds {seeds[0]}…{seeds[-1]}")
    print("\n| rule | runs | wrong way | by optimizer |\n|---|---|---|---|")
    for rule in rules:
        wrong: dict[str, int] = {}
        runs = 0
        for (_, cls, kwargs, needs_closure), k, closure_step, seed in (
            (c, k, s, seed) for c in cases for k in windows for s in (False, True) for seed in seeds
        ):
            initial, final = right_direction_losses(
                cls, kwargs, k, closure_step or needs_closure, seed=seed, rule=rule
            )
            runs += 1
            ok = final > initial if kwargs.get("maximize", False) else final < initial
            if not ok:
                wrong[cls.__name__] = wrong.get(cls.__name__, 0) + 1
        by = ", ".join(f"{n} {c}" for n, c in sorted(wrong.items(), key=lambda item: -item[1])) or "none"
        print(f"| {rule} | {runs} | {sum(wrong.values())} | {by} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rules", nargs="+", default=["robust", "paper"])
    parser.add_argument("--quick", action="store_true", help="usual rate only, K = 1 and 3")
    parser.add_argument(
        "--torch-table",
        action="store_true",
        help="instead: torch's own optim_db cases in its 20-step right-direction test, over --seeds",
    )
    parser.add_argument("--seeds", default="1-10", help="--torch-table's seeds: a range a-b or a list a,b,c")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # TLR warns once per run on non-finite windows: counted below
    if args.torch_table:
        start = time.perf_counter()
        torch_table(args.rules, _seeds(args.seeds))
        print(f"{time.perf_counter() - start:.0f} s")
        return
    scales = (1.0,) if args.quick else (1.0, 10.0, 100.0)
    windows = (1, 3) if args.quick else (1, 2, 3, 6)
    start = time.perf_counter()
    print(f"torch {torch.__version__}; {len(INNERS)} optimizers × rates ×{scales} × {len(PROBLEMS)} problems")
    print(f"× K {windows} × loss observed or not, after {' and '.join(map(str, CHECKPOINTS))} steps\n")
    rows, all_examples = [], []
    for rule in args.rules:
        runs = wrong = 0
        ratios: list[float] = []
        examples: list[str] = []
        for (inner_name, (cls, kwargs)), scale, problem in (
            (i, s, p) for i in INNERS.items() for s in scales for p in PROBLEMS
        ):
            settings = {**kwargs, "lr": kwargs["lr"] * scale}
            bare = _losses(problem, lambda p, c=cls, s=settings: c(p, **s), closure_step=False)
            for k in windows:
                for closure_step in (False, True):
                    try:
                        tlr = _losses(
                            problem,
                            lambda p, c=cls, s=settings, k=k, r=rule: TLR(c(p, **s), update_every=k, rule=r),
                            closure_step,
                        )
                    except RuntimeError as error:  # a crash is the wrong way too, at every checkpoint
                        tlr = {0: 0.0, **{n: math.nan for n in CHECKPOINTS}}
                        if len(examples) < 5:
                            examples.append(f"{inner_name} lr ×{scale:g}, {problem}, K={k}: raised {error}")
                    for n in CHECKPOINTS:
                        runs += 1
                        if not (math.isfinite(bare[n]) and bare[n] < bare[0]):
                            continue  # the inner itself went the wrong way: not TLR's to answer for
                        if math.isfinite(tlr[n]) and tlr[n] > 0 and bare[n] > 0:
                            ratios.append(math.log10(tlr[n] / bare[n]))
                        if not (math.isfinite(tlr[n]) and tlr[n] < tlr[0]):
                            wrong += 1
                            if len(examples) < 5:
                                examples.append(
                                    f"{inner_name} lr ×{scale:g}, {problem}, K={k}, "
                                    f"{'closure' if closure_step else 'no loss'}, {n} steps: "
                                    f"{tlr[0]:.3g} → {tlr[n]:.3g} (bare {bare[n]:.3g})"
                                )
        median = statistics.median(ratios) if ratios else math.nan
        lower = sum(r < 0 for r in ratios) / len(ratios) if ratios else math.nan
        rows.append(f"| {rule} | {runs} | {wrong} | {median:+.3f} | {100 * lower:.1f} % |")
        all_examples += [f"- {rule}: {example}" for example in examples]
    print("| rule | runs | wrong way | median log10(TLR / bare inner) | TLR lower |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    print("\nFirst wrong-way runs:\n" + "\n".join(all_examples) if all_examples else "")
    print(f"{time.perf_counter() - start:.0f} s")


def _seeds(text: str) -> list[int]:
    try:
        if "-" in text:
            first, last = (int(x) for x in text.split("-"))
            seeds = list(range(first, last + 1))
        else:
            seeds = [int(x) for x in text.split(",")]
    except ValueError:
        raise SystemExit(f"--seeds: expected a-b or a,b,c, got {text!r}") from None
    if not seeds:
        raise SystemExit(f"--seeds: no seed in {text!r}")
    return seeds


if __name__ == "__main__":
    main()
