"""`spikeform-convert SRC -o model.pth`: a checkpoint of the official Spikformer code -> ours.

SRC is a file written by the official code (ZK-Zhou/spikformer: cifar10/ and imagenet/
train.py's timm ``*.pth.tar``, cifar10dvs/train.py's container, or a bare state dict; DDP's
``module.`` prefix is removed). It is read without running anything in it: a pickle that
names anything but tensors, plain containers, numbers and argparse.Namespace is refused.
The weights give the architecture; heads, time steps and image size come from the flags,
else from the training arguments stored in the file, else from what the official code fixes
-- otherwise the command says which flag to pass. The summary says where each value came
from and which keys were dropped. The output is an ordinary spikformer-neuro checkpoint
(written atomically) for spikeform-compile, -report and -train --init; spikeform-compile
also takes SRC directly, with the same flags.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from spikformer_neuro.checkpoint import CheckpointError
from spikformer_neuro.official import (DEFAULT_MAX_COUNT, LAYOUTS, ConversionOptions,
                                       OfficialCheckpointError, convert_file, read_container,
                                       save_conversion)
from spikformer_neuro.official.container import OURS

from spikeform_cli.common import CliError, check_output_file, same_file
from spikeform_cli.exit_codes import run_with_exit_codes

LAYOUT_CHOICES = ("auto",) + tuple(LAYOUTS)


def add_conversion_flags(p: argparse.ArgumentParser, group_title: str,
                         with_dataset_and_steps: bool = True) -> None:
    """The flags of an official checkpoint's conversion (spikeform-convert; spikeform-compile
    adds them to its parser, where --time-steps and --dataset already exist)."""
    g = p.add_argument_group(group_title)
    g.add_argument("--num-heads", type=int, help="attention heads (not in the weights; "
                   "default: the file's stored training arguments)")
    if with_dataset_and_steps:
        g.add_argument("--time-steps", type=int, help="time steps T (default: the stored "
                       "arguments; imagenet/model.py fixes 4)")
        g.add_argument("--dataset", help="the data set the model was trained on, for "
                       "calibration and verification (default: from the stored arguments and "
                       "the number of classes)")
    g.add_argument("--img-size", type=int, help="side of the input images (default: the "
                   "stored arguments; cifar10dvs/model.py fixes 128)")
    g.add_argument("--layout", choices=LAYOUT_CHOICES, default="auto",
                   help="which official model.py the weights come from (auto: from the keys)")
    g.add_argument("--ema", action="store_true", help="convert timm's EMA weights "
                   "(state_dict_ema) instead of the trained ones")
    g.add_argument("--mean", type=float, nargs="+", metavar="M",
                   help="input normalisation, one value per channel (default: the stored "
                        "arguments, else the official recipe of the layout)")
    g.add_argument("--std", type=float, nargs="+", metavar="S", help="with --mean")
    g.add_argument("--max-count", type=int, metavar="N",
                   help="cifar10dvs: the largest event count per pixel and time bin the "
                        f"compiled network accepts (default {DEFAULT_MAX_COUNT}); larger "
                        "counts are refused at run time")


def conversion_options(args: argparse.Namespace) -> ConversionOptions:
    return ConversionOptions(num_heads=args.num_heads, time_steps=args.time_steps,
                             img_size=args.img_size, layout=args.layout, ema=args.ema,
                             mean=args.mean, std=args.std, max_count=args.max_count,
                             dataset=args.dataset)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spikeform-convert", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("source", help="checkpoint of the official Spikformer code "
                                  "(model_best.pth.tar, checkpoint_max_test_acc1.pth, ...)")
    p.add_argument("-o", "--output", required=True,
                   help="the spikformer-neuro checkpoint to write (model.pth)")
    add_conversion_flags(p, "what the weights do not say")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the output path")
    return p


def _check_output(out: Path, source: Path) -> None:
    """-o is a new file or an earlier spikformer-neuro checkpoint: anything else there (the
    source itself, a directory, some other file) is refused rather than overwritten."""
    if same_file(out, source):
        raise CliError(f"-o/--output {out} is the source file; choose another path")
    if out.is_dir():
        raise CliError(f"-o/--output {out} is a directory; give a file path such as "
                       f"{out / 'model.pth'}")
    if out.exists() or out.is_symlink():
        try:
            ours = read_container(out).kind == OURS
        except CheckpointError:
            ours = False
        if not ours:
            raise CliError(f"-o/--output {out} exists and is not a spikformer-neuro checkpoint; "
                           "it would be overwritten: move it away, or choose another path")
    check_output_file(out, "-o/--output")


def run(args: argparse.Namespace) -> int:
    source, out = Path(args.source), Path(args.output)
    _check_output(out, source)
    conversion = convert_file(source, conversion_options(args))
    save_conversion(conversion, out)
    if not args.quiet:
        print("\n".join(conversion.summary.lines()))
    print(f"wrote             {out}" if not args.quiet else out)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return run_with_exit_codes("spikeform-convert", lambda: run(args),
                               (CliError, CheckpointError, OfficialCheckpointError, OSError),
                               interrupted="nothing was written")


if __name__ == "__main__":
    sys.exit(main())
