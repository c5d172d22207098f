"""run() orchestrates; the workload's task says how to get batches, take a step and evaluate."""

from ntlr_bench import runner
from ntlr_bench.records import RunConfig


def test_run_takes_every_step_through_the_tasks_train_step(monkeypatch):
    calls = []
    real = runner._Task.train_step

    def counted(self, model, opt, spec, batch, world):
        calls.append(type(self).__name__)
        return real(self, model, opt, spec, batch, world)

    monkeypatch.setattr(runner._Task, "train_step", counted)
    evaluated = []
    real_evaluate = runner._ImageTask.evaluate
    monkeypatch.setattr(
        runner._ImageTask, "evaluate", lambda self, m: evaluated.append(1) or real_evaluate(self, m)
    )
    record = runner.run(
        RunConfig("digits_mlp", "tlr_sgd", 0.05, batch_size=64, budget="smoke"), progress=False
    )
    assert calls == ["_ImageTask"] * record["total_steps"] == ["_ImageTask"] * len(record["step_loss"])
    assert len(evaluated) == len(record["evals"]) >= 1
