"""Mutation testing of the numeric core: how many small defects the test suite catches.

Each mutant changes one site of one module: an arithmetic operator (``+`` ↔ ``-``, ``*`` ↔ ``/``,
...), a comparison (``<`` ↔ ``<=``, ``==`` ↔ ``!=``, ``is`` ↔ ``is not``, ``in`` ↔ ``not in``),
``and`` ↔ ``or``, a dropped ``not`` or unary minus, a numeric or boolean constant (``n`` → ``n + 1``,
``x`` → ``2 x``, ``True`` ↔ ``False``), or a dropped call statement / augmented assignment. The
mutated module is written into a scratch copy of the package, and the test files that cover the
module run against it in a child forked from a process that has already imported torch, detectron2
and pytest (so a mutant costs its tests, not the imports). A mutant is *killed* when the tests fail,
*survives* when they pass, and *times out* after three times the unmutated run plus 10 s. Each
module's results go to ``<out>/<module>.json``; docs/mutation_testing.md has the measurement.

Only one child runs at a time. This is a measurement for developers, not part of ``make test``::

    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python tools/mutation_test.py losses solver \\
        --out output/mutation
"""

import argparse
import ast
import json
import os
import shutil
import signal
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE_DIR = os.path.join(REPO_ROOT, "projects", "DenseCLIP", "denseclip")


def _test_ids(path, *names):
    """pytest node ids of the tests ``names`` (without their ``test_`` prefix) of ``path``."""
    return [f"{path}::test_{name}" for name in names]


_BOX_TARGET_TESTS = _test_ids(
    "tests/test_detection.py",
    "targets_truncate_box_coordinates_divided_by_4",
    "targets_clamp_to_the_last_cell_which_stays_uncovered",
    "targets_put_each_box_in_its_class_channel_without_double_counting",
    "mask_is_the_union_of_all_boxes_whatever_their_class",
    "image_without_boxes_has_empty_targets",
    "targets_match_the_official_loop_on_random_boxes",
    "loss_averages_bce_over_covered_pixels_and_all_classes",
    "loss_ignores_pixels_outside_the_boxes",
    "loss_is_one_mean_over_the_batch_not_a_mean_of_image_means",
    "loss_upsamples_the_score_map_bilinearly_to_stride_4",
    "loss_without_any_box_is_zero_and_differentiable",
    "aux_loss_weight_scales_the_aux_loss_and_zero_removes_it",
)
_VITDET_TESTS = _test_ids(
    "tests/test_vit_detection.py",
    "encoder_is_openai_clip_when_windows_cover_the_grid",
    "positional_embedding_is_resized_bicubically_to_the_image_grid",
    "encoder_declares_one_stride_16_map_and_its_embeddings",
    "default_windows_are_vitdet_vit_b",
    "window_blocks_must_exist",
    "window_partition_pads_and_unpartition_restores_a_grid_of_any_size",
    "padding_mask_marks_the_cells_that_hold_a_patch",
    "window_attention_is_attention_within_windows_plus_the_class_token",
    "windowed_block_mixes_windows_only_through_the_class_token",
    "activation_checkpointing_recomputes_blocks_and_keeps_the_gradients",
    "windowed_attention_flops_are_counted_window_by_window",
    "score_channels_join_the_stride_16_map_before_the_simple_feature_pyramid",
    "aux_loss_gradient_reaches_the_contexts_from_the_stride_16_score_map",
    "tiny_detectors_take_images_of_any_size_without_config_edits",
    "openai_vit_weights_load_into_every_image_encoder_tensor",
    "layer_wise_decay_follows_the_depth_of_the_clip_vit",
    "coco_vit_model_is_vitdet_b_over_the_clip_vit",
)
_CLIP_TEXT_TESTS = [
    *_test_ids(
        "tests/test_clip_encoders.py",
        "text_encoder_has_openai_text_parameters_with_truncated_positions",
        "text_encode_plain_equals_openai_encode_text",
        "text_features_with_contexts_equal_hand_built_sequence_read_at_eot_plus_n",
        "text_features_ignore_tokens_after_eot_but_depend_on_class_tokens",
        "text_encoder_runs_each_image_contexts_separately",
        "text_encoder_rejects_tokens_plus_contexts_not_equal_to_context_length",
        "text_causal_mask_is_not_saved_in_the_state_dict",
        "tokenize_class_names_places_sot_bpe_eot_and_zero_padding",
        "tokenize_class_names_rejects_a_long_name_and_names_it",
        "tokenize_class_names_rejects_an_empty_list",
        "text_encoder_checkpointing_keeps_the_context_gradients",
        "text_encoder_checkpointing_recomputes_the_blocks",
    ),
    "tests/test_text_prefix.py",
    *_test_ids(
        "tests/test_predictor_long_running.py",
        "tokenizer_remembers_a_bounded_number_of_words",
        "tokenizer_keeps_its_special_tokens_whatever_it_forgets",
        "tokenizer_cache_size_is_bounded_by_default",
    ),
    "tests/test_detection_data.py::test_coco_names_fit_in_three_bpe_tokens",
    *_test_ids(
        "tests/test_official_equivalence.py",
        "whole_inference_matches_official[resnet-96x128]",
        "the_text_side_drives_the_compared_logits",
        "conversion_keeps_the_checkpoints_text_encoder",
    ),
    "tests/test_official_detection_training.py",
]
_CLIP_RESNET_TESTS = [
    *_test_ids(
        "tests/test_clip_encoders.py",
        "full_size_resnet_outputs_have_stage_and_embedding_shapes",
        "full_size_resnet_has_openai_parameters_plus_larger_positional_embedding",
        "resnet_state_dict_names_are_openai_visual_names",
        "resnet_global_embedding_equals_openai_attention_pool_output",
        "resnet_dense_embedding_is_multihead_attention_output_at_each_position",
        "resnet_positional_embedding_is_resized_bilinearly_to_the_feature_map",
        "resnet_without_attention_pool_returns_only_stage_features",
        "resnet_checkpointing_keeps_gradients_and_counts_each_batch_once_in_batch_norms",
        "resnet_checkpointing_recomputes_the_stem_and_the_stages_only_in_training",
    ),
    *_test_ids(
        "tests/test_image_sizes.py",
        "attention_pool_bounds_its_attention_weights_and_keeps_its_outputs",
        "attention_pool_takes_one_chunk_at_the_papers_sizes",
        "crop_mode_crops_a_map_that_fits_exactly_as_the_official_code",
        "crop_mode_resizes_the_full_grid_bilinearly_for_a_larger_map",
        "crop_mode_warns_once_per_module_about_a_larger_map",
        "detections_on_an_image_that_fits_are_those_of_the_official_crop",
    ),
    *_test_ids(
        "tests/test_official_equivalence.py",
        "whole_inference_matches_official",
        "slide_inference_matches_official",
    ),
    "tests/test_official_detection_training.py",
    *_test_ids(
        "tests/test_official_detection_pipeline.py",
        "retinanet_detections_are_the_official_ones_from_the_image_file",
        "mask_rcnn_detections_and_masks_are_the_official_ones_from_the_image_file",
    ),
]
_CLIP_VIT_TESTS = [
    *_test_ids(
        "tests/test_clip_encoders.py",
        "full_size_vit_b16_outputs_have_pyramid_and_embedding_shapes",
        "full_size_vit_b16_has_openai_parameters_plus_pyramid_and_larger_positions",
        "vit_uses_official_class_token_arithmetic_on_openai_weights",
        "vit_positional_embedding_is_resized_bilinearly_to_the_patch_grid",
        "vit_pyramid_levels_have_strides_4_8_16_32",
        "vit_pyramid_keeps_official_module_names",
        "vit_rejects_patch_size_other_than_16",
        "vit_checkpointing_keeps_gradients_with_drop_path",
    ),
    *_test_ids(
        "tests/test_official_equivalence.py",
        "whole_inference_matches_official",
        "slide_inference_matches_official",
        "the_text_side_drives_the_compared_logits[vit]",
    ),
]
#: module name → (file under the package, the tests that cover it: files or node ids).
MODULES = {
    "losses": (
        "losses.py",
        ["tests/test_losses_and_head.py", "tests/test_semantic_segmentor.py", *_BOX_TARGET_TESTS],
    ),
    "solver": (
        "solver.py",
        [
            "tests/test_solver.py",
            "tests/test_detection.py::test_gradient_clipping_scales_all_gradients_by_one_global_norm",
            "tests/test_detection.py::test_gradient_clipping_leaves_small_gradients_alone",
            "tests/test_vit_detection.py::test_layer_wise_decay_follows_the_depth_of_the_clip_vit",
        ],
    ),
    "fuse": (
        "inference/fuse.py",
        [
            "tests/test_inference.py::test_folding_batch_norms_keeps_the_outputs",
            "tests/test_inference.py::test_folding_a_frozen_batch_norm_of_a_detectron2_conv",
            "tests/test_inference.py::test_folding_needs_eval_mode",
            "tests/test_inference.py::test_predictor_folds_batch_norms_without_changing_predictions",
        ],
    ),
    "sem_seg_head": (
        "sem_seg_head.py",
        ["tests/test_losses_and_head.py", "tests/test_semantic_segmentor.py"],
    ),
    "box_seg_loss": (
        "meta_arch/box_seg_loss.py",
        [
            *_BOX_TARGET_TESTS,
            "tests/test_detection.py::test_image_without_boxes_gives_finite_losses",
            "tests/test_vit_detection.py::"
            "test_aux_loss_gradient_reaches_the_contexts_from_the_stride_16_score_map",
        ],
    ),
    "prompting": (
        "prompting.py",
        [
            "tests/test_prompting.py",
            "tests/test_text_prefix.py",
            "tests/test_semantic_segmentor.py",
        ],
    ),
    "semantic_segmentor": (
        "meta_arch/semantic_segmentor.py",
        ["tests/test_semantic_segmentor.py", "tests/test_official_equivalence.py"],
    ),
    "clip_text": ("clip/text.py", _CLIP_TEXT_TESTS),
    "clip_transformer": (
        "clip/transformer.py",
        [
            "tests/test_clip_encoders.py",
            "tests/test_text_prefix.py",
            "tests/test_export.py::test_traced_clip_attention_equals_multihead_attention",
        ],
    ),
    "clip_resnet": ("clip/resnet.py", _CLIP_RESNET_TESTS),
    "clip_vit": ("clip/vit.py", _CLIP_VIT_TESTS),
    "clip_vitdet": ("clip/vitdet.py", _VITDET_TESTS),
}

_BINOP_SWAPS = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Mult,
    ast.Mod: ast.FloorDiv,
    ast.Pow: ast.Mult,
    ast.MatMult: ast.Mult,
    ast.BitOr: ast.BitAnd,
    ast.BitAnd: ast.BitOr,
    ast.LShift: ast.RShift,
    ast.RShift: ast.LShift,
}
_COMPARE_SWAPS = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}
#: Calls whose removal only changes logging or warnings: never mutated.
_SILENT_CALLEES = {"logger", "logging", "warnings", "log"}


def _is_silent_call(node):
    func = node.value.func
    while isinstance(func, ast.Attribute):
        func = func.value
    return isinstance(func, ast.Name) and func.id in _SILENT_CALLEES


def mutation_sites(tree):
    """Every mutation of ``tree`` as (node, its parent, description, action), in a fixed order.

    Strings (docstrings, messages) and annotations are never mutated."""
    parents = {}
    for parent in ast.walk(tree):
        for child in ast.iter_child_nodes(parent):
            parents[id(child)] = parent
    annotations = set()
    for node in ast.walk(tree):
        for field in ("annotation", "returns"):
            sub = getattr(node, field, None)
            if sub is not None:
                annotations.update(id(n) for n in ast.walk(sub))
    sites = []
    for node in ast.walk(tree):
        if id(node) in annotations:
            continue
        kind = type(node)
        if kind in (ast.BinOp, ast.AugAssign) and type(node.op) in _BINOP_SWAPS:
            new = _BINOP_SWAPS[type(node.op)]
            sites.append((node, f"{type(node.op).__name__} -> {new.__name__}", ("op", new)))
        if kind is ast.Compare:
            for i, op in enumerate(node.ops):
                new = _COMPARE_SWAPS[type(op)]
                sites.append((node, f"{type(op).__name__} -> {new.__name__}", ("cmp", i, new)))
        elif kind is ast.BoolOp:
            new = ast.Or if isinstance(node.op, ast.And) else ast.And
            sites.append((node, f"{type(node.op).__name__} -> {new.__name__}", ("op", new)))
        elif kind is ast.UnaryOp and isinstance(node.op, (ast.Not, ast.USub)):
            sites.append((node, f"drop {type(node.op).__name__}", ("unwrap",)))
        elif kind is ast.Constant and not isinstance(node.value, str):
            value = node.value
            if isinstance(value, bool):
                new_value = not value
            elif isinstance(value, int):
                new_value = value + 1
            elif isinstance(value, float):
                new_value = value * 2 if value else 1.0
            else:
                continue
            sites.append((node, f"{value!r} -> {new_value!r}", ("const", new_value)))
        elif kind is ast.Expr and isinstance(node.value, ast.Call) and not _is_silent_call(node):
            sites.append((node, "drop call statement", ("pass",)))
        elif kind is ast.AugAssign:
            sites.append((node, "drop augmented assignment", ("pass",)))
    return [(node, parents.get(id(node)), text, action) for node, text, action in sites]


def _replace_child(parent, old, new):
    for field, value in ast.iter_fields(parent):
        if value is old:
            setattr(parent, field, new)
            return
        if isinstance(value, list):
            for i, item in enumerate(value):
                if item is old:
                    value[i] = new
                    return
    raise ValueError("child not found")


def mutate(source, index):
    """``source`` with its ``index``-th mutation applied, and the mutation's description."""
    tree = ast.parse(source)
    node, parent, text, action = mutation_sites(tree)[index]
    if action[0] == "op":
        node.op = action[1]()
    elif action[0] == "cmp":
        node.ops[action[1]] = action[2]()
    elif action[0] == "unwrap":
        _replace_child(parent, node, node.operand)
    elif action[0] == "const":
        node.value = action[1]
    else:
        _replace_child(parent, node, ast.copy_location(ast.Pass(), node))
    return ast.unparse(ast.fix_missing_locations(tree)), f"line {node.lineno}: {text}"


def run_tests(package_root, test_files, timeout_s):
    """Run ``test_files`` against the package under ``package_root`` in a forked child.

    Returns "passed", "failed" or "timeout".
    """
    import pytest

    pid = os.fork()
    if pid == 0:  # child: import the package from the scratch copy, bytecode never cached
        sys.path.insert(0, package_root)
        sys.dont_write_bytecode = True
        sys.pycache_prefix = tempfile.mkdtemp(prefix="pycache_", dir=package_root)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        code = pytest.main(["-x", "-q", "-p", "no:cacheprovider", *test_files])
        os._exit(int(code))
    deadline = time.monotonic() + timeout_s
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return "passed" if os.waitstatus_to_exitcode(status) == 0 else "failed"
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "timeout"
        time.sleep(0.05)


def measure(module, scratch_root, out_dir, stop_at, indices=None, test_files=None):
    """Run the mutants of ``module`` (all, or those of ``indices``) and write their results."""
    rel_path, module_tests = MODULES[module]
    test_files = test_files or module_tests
    source_path = os.path.join(PACKAGE_DIR, rel_path)
    target = os.path.join(scratch_root, "denseclip", rel_path)
    with open(source_path) as f:
        source = f.read()
    n_sites = len(mutation_sites(ast.parse(source)))
    tests = list(test_files)

    with open(target, "w") as f:  # the unmutated module, round-tripped through ast as mutants are
        f.write(ast.unparse(ast.parse(source)))
    start = time.monotonic()
    baseline = run_tests(scratch_root, tests, timeout_s=900)
    baseline_s = time.monotonic() - start
    if baseline != "passed":
        print(f"{module}: the tests do not pass on the unmutated module, skipped", flush=True)
        shutil.copy2(source_path, target)
        return
    results = []
    for index in range(n_sites) if indices is None else indices:
        if stop_at and time.time() > stop_at:
            results.append({"index": index, "status": "not run"})
            continue
        mutant, where = mutate(source, index)
        with open(target, "w") as f:
            f.write(mutant)
        status = run_tests(scratch_root, tests, timeout_s=3 * baseline_s + 10)
        status = {"passed": "survived", "failed": "killed"}.get(status, status)
        results.append({"index": index, "where": where, "status": status})
        print(f"{module} #{index} of {n_sites}, {where}: {status}", flush=True)
    shutil.copy2(source_path, target)
    counts = {}
    for r in results:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    report = {"module": rel_path, "tests": test_files, "baseline_s": baseline_s, "counts": counts}
    report["mutants"] = results
    with open(os.path.join(out_dir, f"{module}.json"), "w") as f:
        json.dump(report, f, indent=1)
    print(f"{module}: {n_sites} mutants {counts}", flush=True)


def argument_parser() -> argparse.ArgumentParser:
    """The command line: modules to mutate, where the results go, which mutants and tests."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("modules", nargs="+", choices=sorted(MODULES))
    parser.add_argument("--out", default=os.path.join(REPO_ROOT, "output", "mutation"))
    parser.add_argument(
        "--stop-at", type=float, default=0, help="unix time: run no mutant after it"
    )
    parser.add_argument("--list", action="store_true", help="print the mutants, run nothing")
    parser.add_argument("--mutants", type=int, nargs="+", help="run only these mutant indices")
    parser.add_argument("--tests", nargs="+", help="run these tests instead of the module's")
    return parser


def main():
    """Lists or runs the mutants of the modules given on the command line."""
    args = argument_parser().parse_args()
    if args.list:
        for module in args.modules:
            with open(os.path.join(PACKAGE_DIR, MODULES[module][0])) as f:
                source = f.read()
            for index in range(len(mutation_sites(ast.parse(source)))):
                print(module, index, mutate(source, index)[1])
        return
    os.makedirs(args.out, exist_ok=True)
    os.chdir(REPO_ROOT)
    import detectron2.modeling  # noqa: F401  (imported once, before the children fork)
    import pytest  # noqa: F401
    import torch  # noqa: F401

    assert "denseclip" not in sys.modules, "the package must be imported by the children only"
    scratch_root = tempfile.mkdtemp(prefix="mutation_")
    shutil.copytree(PACKAGE_DIR, os.path.join(scratch_root, "denseclip"))
    try:
        for module in args.modules:
            measure(module, scratch_root, args.out, args.stop_at, args.mutants, args.tests)
    finally:
        shutil.rmtree(scratch_root)


if __name__ == "__main__":
    main()
