"""Every registered recipe's model trains under a plain `model.compile()` + `model.fit(...)`.

`RecipeModel.compile()` keeps the model's own optimizer(s); the recipe's
`train_step` runs inside Keras's loop. Tiny configs (one per built-in recipe;
a new recipe must add one here).
"""

import numpy as np
import pytest

from kerasnets import registry
from kerasnets.config import apply_overrides
from kerasnets.models.recipe_model import RecipeModel, own_optimizers

_DETECTION = dict(image_size=64, num_train_images=4, num_val_images=2, batch_size=2)
_TWO_STAGE = dict(_DETECTION, backbone_width=8, fc_dim=64, roi_batch_size=64, rpn_pre_nms_top_k_train=200,
                  rpn_post_nms_top_k_train=100, rpn_pre_nms_top_k_test=200, rpn_post_nms_top_k_test=100,
                  max_objects=4, horizontal_flip=False, warmup_steps=0)
_ATTACK = dict(batch_size=32, max_train=300, max_test=60, num_attack=3, num_plot=2)

TINY = {
    "batchnorm": dict(curve_examples=200),
    "began": dict(image_size=8, n=8, h=8, batch_size=16, num_samples=16, skip=False),
    "bit_flip_attack": dict(_ATTACK, classifier="mlp"),
    "dgex": dict(n_samples=300, n_landmarks=30, n_targets=60, hidden_units=(32,), batch_size=50),
    "edge_popup": dict(batch_size=16, depth=2, width_mult=0.125),
    "fast_rcnn": dict(_DETECTION, widths=(16, 32, 48), convs_per_block=(1, 1, 1), fc_dim=96, rois_per_image=32,
                      warmup_steps=20),
    "faster_rcnn": _TWO_STAGE,
    "fasttext": dict(num_train=200, num_test=50, buckets=4096),
    "gat": dict(_ATTACK, fgsm_eps=(0.1,), lbfgs_search_steps=1),
    "guesswhat": dict(num_train=64, num_test=16, batch_size=16, steps=30, reinforce_steps=10, word_dim=16,
                      oracle_units=16, guesser_units=16, qgen_units=16, category_dim=8, hidden_units=16, scene_dim=8,
                      baseline_units=8, max_questions=2, max_question_tokens=5, num_eval_games=16),
    "hrnet": dict(image_height=32, image_width=32, width=4, num_modules=(1,), num_blocks=1, stage1_planes=8,
                  stage1_blocks=1, batch_size=8, num_train=32, num_val=8),
    "improved_gan": dict(batch_size=20, reference_batch_size=10, noise_dim=8, generator_hidden=(16,),
                         discriminator_hidden=(32, 16), labels_per_class=3, gan_metrics=False),
    "lbfgs_attack": _ATTACK,
    "mask_rcnn": dict(_TWO_STAGE, fpn_channels=16, mask_conv_dim=16, mask_num_convs=2, keypoint_conv_dim=16,
                      keypoint_num_convs=2, head_rois_per_image=16),
    "rcnn": dict(_DETECTION, image_size=96, widths=(16, 32, 48), convs_per_block=(1, 1, 1), fc_dim=64,
                 windows_per_image=32, warp_size=24, context_padding=2),
    "resnet": dict(depth=8, image_size=8, batch_size=16),
    "retarget2d": dict(batch_size=8, window=16, train_motions=4, train_bodies=3, test_motions=3, test_bodies=2,
                       views=(-60.0, 0.0, 60.0), motion_channels=(30, 16, 16, 32), body_channels=(28, 8, 8, 8, 4),
                       view_channels=(28, 8, 8, 8, 2), decoder_channels=(38, 16, 16, 30)),
    "show_attend_tell": dict(batch_size=16, num_train=64, num_val=8, max_objects=1, max_length=8, image_size=16,
                             encoder_filters=(8, 16), embed_dim=16, units=32, attention_units=16),
    "ssd": dict(_DETECTION, num_train_images=6, batch_size=6, stage_widths=(16, 32, 32), stage_depths=(1, 1, 1),
                top_widths=(32,), fc_width=64, extra_widths=(32, 32)),
    "supermask": dict(batch_size=16, width_mult=0.125),
    "tcc": dict(frame_size=16, base_filters=(4, 4, 4), conv_filters=(8,), fc_units=(16,), embedding_dim=8,
                num_frames=6, batch_size=2, num_train=4, num_val=3, min_len=10, max_len=14),
    "tompson": dict(image_size=32, bank_filters=(4, 4, 4), fc_filters=(8,), batch_size=4, num_train=16, num_val=8),
    "videopose3d": dict(filter_widths=(3, 3), channels=16, batch_size=32, num_frames=40, actions_per_subject=1,
                        train_subjects=("S1", "S5"), test_subjects=("S9",)),
}


def test_every_registered_recipe_has_a_tiny_config():
    assert sorted(TINY) == sorted(registry.BUILTIN_RECIPES)


def _tiny_recipe(name, tmp_path):
    cls = registry.get(name)
    overrides = dict(TINY[name], strategy="default", steps=max(TINY[name].get("steps", 10), 10))
    fields = cls.config_class.__dataclass_fields__
    if "proposal_cache_dir" in fields:
        overrides["proposal_cache_dir"] = str(tmp_path / "proposals")
    return cls(apply_overrides(cls.config_class(), overrides, parse=False))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(registry.BUILTIN_RECIPES))
def test_plain_compile_and_fit_trains_with_the_models_own_optimizers(name, tmp_path):
    recipe = _tiny_recipe(name, tmp_path)
    model = recipe.build_model()
    assert isinstance(model, RecipeModel)
    optimizers = own_optimizers(model)
    assert optimizers, f"{name}: no optimizer attribute found"
    single = optimizers.get("optimizer")
    before = [v.numpy().copy() for v in model.trainable_variables]

    model.compile()
    if single is not None:
        assert model.optimizer is single  # not replaced by compile()'s default (RMSprop)
    history = model.fit(recipe.build_dataset("train"), steps_per_epoch=2, epochs=1, verbose=0)

    for label, optimizer in optimizers.items():
        assert int(optimizer.iterations.numpy()) == 2, f"{name}: {label} stepped {optimizer.iterations.numpy()} times"
    changed = [not np.array_equal(b, v.numpy()) for b, v in zip(before, model.trainable_variables)]
    assert any(changed), f"{name}: no trainable weight changed in 2 fit steps"
    assert history.history and all(np.isfinite(np.asarray(v, dtype="float64")).all()
                                   for v in history.history.values())


def test_compile_refuses_a_loss_and_a_foreign_optimizer_for_multi_optimizer_models(tmp_path):
    single = _tiny_recipe("resnet", tmp_path).build_model()
    with pytest.raises(ValueError, match="own loss"):
        single.compile(loss="mse")
    gan = _tiny_recipe("began", tmp_path).build_model()
    with pytest.raises(ValueError, match="d_optimizer, g_optimizer"):
        gan.compile(optimizer="adam")
