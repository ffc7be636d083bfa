"""The trained model is evaluated once per run: on_train_end's evaluation is reused by the CLI."""

from kerasnets.training import engine
from toy_recipe import ToyConfig, ToyRecipe


class CountingRecipe(ToyRecipe):
    """Evaluates in on_train_end (as most recipes do) and counts the real evaluations."""

    evaluations = 0

    def evaluate(self, model, split="test"):
        CountingRecipe.evaluations += 1
        return {**super().evaluate(model), "evaluations": CountingRecipe.evaluations, "split": split}

    def on_train_end(self, model, run_dir, history):
        return dict(self.evaluate(model))


def test_cli_evaluation_reuses_on_train_end_evaluation(tmp_path):
    CountingRecipe.evaluations = 0
    recipe = CountingRecipe(ToyConfig(steps=2, checkpoint_every=100, log_every=1))
    result = engine.train(recipe, str(tmp_path / "run"))
    assert result.summary["evaluations"] == 1
    again = recipe.evaluate(result.model)  # what `kerasnets train` does for eval.json
    assert again == {k: v for k, v in result.summary.items() if k in again}
    assert CountingRecipe.evaluations == 1
    again["accuracy"] = -1.0  # callers get a copy
    assert recipe.evaluate(result.model)["accuracy"] != -1.0
    assert recipe.evaluate(model=result.model)["evaluations"] == 1
    # Other arguments, or another model (e.g. a restored one), evaluate for real.
    assert recipe.evaluate(result.model, "train")["split"] == "train"
    assert recipe.evaluate(result.model, split="test")["evaluations"] == 3
    recipe.evaluate(recipe.build_model())
    assert CountingRecipe.evaluations == 4


def test_without_training_every_call_evaluates(tmp_path):
    CountingRecipe.evaluations = 0
    recipe = CountingRecipe(ToyConfig(steps=2))
    model = recipe.build_model()
    recipe.evaluate(model)
    recipe.evaluate(model)
    assert CountingRecipe.evaluations == 2
