"""``python -m musicgan``: a thin command-line face on the library.

    stats PATH...                       what a set of MIDI files holds (and what was skipped)
    prepare PATH... --out CACHE         parse a large corpus in parallel into shards for training
    train PATH... --out DIR             train a model (--steps / --minutes, --resume, --start-from, --device)
    generate [CKPT] --out FILE.mid      new music from a checkpoint (the pretrained one by default)
    continue FILE.mid [CKPT] --out F    carry on from the first bars of a MIDI file (--bars N more)
    harmonise FILE.mid [CKPT] --out F   keep a melody (a file's top line; --voice bottom: its bass) and
                                        write the other voices
    add-harmoniser CKPT PATH...         train a model's harmoniser on its training music (--minutes M,
                                        --voice top|bottom, --device)
    recalibrate CKPT PATH...            fit a model's sampling biases again on its training music and
                                        read its forms, parallels, endings and openings (--music-only:
                                        those alone); its weights stay
    evaluate [CKPT] --reference PATH... generated vs. real music, in numbers
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path


class CliError(Exception):
    pass


def load_corpus(paths, find_pickups: bool = True):
    """A prepared corpus (``prepare``'s output folder) or MIDI files, folders and zips, on the
    grid the music needs (``find_pickups``: see ``data.load``)."""
    from . import data, shards

    if len(paths) == 1 and shards.is_prepared(paths[0]):
        corpus = shards.open_corpus(paths[0])  # streamed from disk while training
        return data.Corpus(corpus, corpus.report)
    return data.load(paths, "auto", find_pickups=find_pickups)


def cmd_prepare(args) -> int:
    import time

    from tqdm import tqdm

    from . import shards

    bar = tqdm(unit=" files", file=sys.stderr, disable=args.quiet)
    t0 = time.perf_counter()
    report = shards.prepare(args.paths, args.out, workers=args.workers, progress=lambda n: bar.update(1),
                            find_pickups=not args.bars_as_written)
    bar.close()
    seconds = time.perf_counter() - t0
    print(report.format())
    print(f"{len(report.read) / max(seconds, 1e-9):,.0f} files/s with {args.workers} worker(s); "
          f"train with: python -m musicgan train {args.out} --out MODEL_DIR")
    if not report.read:
        raise CliError("no usable MIDI file found")
    return 0


def cmd_stats(args) -> int:
    from . import data

    corpus = data.load(args.paths, cache_dir=not args.no_cache, find_pickups=not args.bars_as_written)
    report = corpus.report
    grid = data.grid_for(report)
    if args.json:
        print(json.dumps({**report.to_dict(), "steps_per_beat_needed": grid}, indent=2))
    else:
        print(report.format())
        print(f"grid: {grid} steps a beat" + (" (finer than 4: train reads the music on it)" if grid != 4 else ""))
    if not corpus.rolls:
        raise CliError("no usable MIDI file found")
    return 0


def _init_distributed(device_name: str):
    """Under torchrun (WORLD_SIZE > 1): join the process group; NCCL on GPUs, gloo on CPUs.
    Returns (device, rank)."""
    import os

    import torch
    from .train import pick_device

    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = pick_device(device_name)
    if world <= 1:
        return device, 0
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device, torch.distributed.get_rank()


def cmd_train(args) -> int:
    if args.steps is None and args.minutes is None:
        args.steps = 2000
    device, rank = _init_distributed(args.device)
    try:
        return _train(args, device, rank)
    finally:
        import torch
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _train(args, device, rank) -> int:
    from tqdm import tqdm

    from . import checkpoint as ckpt, metre as metres, settings
    from .models import ModelConfig
    from .train import Budget, TrainConfig, Trainer, TrainingError, default_width, device_label, model_config_for

    quiet = args.quiet or rank > 0  # one process talks and saves: rank 0
    corpus = load_corpus(args.paths, not args.bars_as_written)
    if not quiet:
        print(corpus.report.format(), file=sys.stderr)
    if not corpus.rolls:
        raise CliError("no usable MIDI file found")
    config = TrainConfig(**settings.given(args, TrainConfig))
    model_flags = settings.given(args, ModelConfig, MODEL_FLAGS)
    if model_flags and (args.resume or args.start_from):
        raise CliError("the model settings (" + ", ".join(settings.describe(ModelConfig, n).flag for n in model_flags)
                       + ") are for a new model; a resumed or fine-tuned run keeps its model's")
    budget = Budget(steps=args.steps, minutes=args.minutes)
    out = Path(args.out)
    resume = None
    if args.resume:
        resume = ckpt.load(out, with_discriminator=True)
        config = TrainConfig.from_dict(resume.meta.get("train", {}))
    bar = tqdm(total=1000, unit="‰", bar_format="{l_bar}{bar}| {elapsed}<{remaining} {postfix}",
               file=sys.stderr, disable=quiet)

    def on_event(event):
        if event["event"] == "step":
            bar.n = int(1000 * event["progress"])
            shown = {k: f"{event[k]:.3f}" for k in ("mle", "held_out", "d_loss", "g_loss", "d_accuracy") if k in event}
            bar.set_postfix(step=event["step"], phase=event["phase"], **shown, refresh=False)
            bar.update(0)

    base = None
    if args.start_from and not resume:
        from .generate import DEFAULT_CHECKPOINT

        base = ckpt.load(DEFAULT_CHECKPOINT if args.start_from == "pretrained" else args.start_from,
                         with_discriminator=True)
    model = resume.model if resume else base.model if base else None
    if model is None and model_flags:
        model = model_config_for(corpus.rolls, transpose=config.transpose,
                                 **{"hidden": default_width(device, budget), **model_flags})
    trainer = Trainer(corpus.rolls, model, config, device, on_event, budget)
    if resume:
        trainer.restore(resume)
    elif base:
        trainer.start_from(base)
    if rank == 0:
        m = trainer.model
        known = ", ".join(metres.name(x) for x in m.metres) if m.metre_input else "4/4 bars (a model from before metres)"
        print(f"training on {device_label(device)} x {trainer.world_size}: {len(trainer.data):,} windows of "
              f"{trainer.windows.config.window_steps} steps, {trainer.config.batch_size} a step"
              f"{'' if config.batch_size else ' (chosen for the device)'}, likelihood learning rate "
              f"{trainer.config.lr_mle:g}{'' if config.lr_mle else ' (for its width and the number of pieces)'}; "
              f"{m.voices} voices, "
              f"pitches {m.pitch_low}-{m.pitch_high}, metres {known}", file=sys.stderr)
        if trainer.held_out is not None:
            print(f"{trainer.held_out.pieces} of the pieces held out, to measure what it learns of the style "
                  f"(--holdout; the weights where their loss is lowest are kept)", file=sys.stderr)
    try:
        outcome = trainer.run(budget)
    except TrainingError as e:
        bar.close()
        raise CliError(str(e)) from None
    finally:
        bar.close()
        if trainer.step_count and rank == 0:
            trainer.save(out)  # also on Ctrl-C and on errors: nothing is lost
    if rank > 0:
        return 0
    if trainer.ended_early is not None:
        print(f"the loss on the held-out pieces stopped falling at step {trainer.best['step']}: the warm-up ended "
              f"early, and the model is the one from that step", file=sys.stderr)
    print(f"{outcome} after {trainer.step_count} steps ({trainer.elapsed_s / 60:.1f} min); "
          f"checkpoint in {out}", file=sys.stderr)
    return 130 if outcome == "stopped" else 0


def cmd_continue(args) -> int:
    from . import api

    _check_program(args)
    if not 1 <= args.opening_bars <= 64:
        raise CliError("--opening-bars must be 1 to 64")
    model = api.load_model(args.checkpoint)
    given = dict(opening=Path(args.opening), opening_bars=args.opening_bars, find_pickups=not args.bars_as_written)
    with _elsewhere(args, "continuation", given):
        piece = api.compose_continuation(model, seed=args.seed, bars=args.bars, tempo_bpm=args.tempo,
                                         program=args.program, temperature=args.temperature, audio=False,
                                         whole=not args.only_new, **given)
    return _write_piece(args, piece)


def cmd_harmonise(args) -> int:
    from . import api

    _check_program(args)
    model = api.load_model(args.checkpoint)
    given = dict(melody=Path(args.melody), voice=args.voice, find_pickups=not args.bars_as_written)
    with _elsewhere(args, "harmonisation", given):
        piece = api.compose_harmonisation(model, seed=args.seed, tempo_bpm=args.tempo, program=args.program,
                                          temperature=args.temperature, audio=False, **given)
    return _write_piece(args, piece)


@contextlib.contextmanager
def _elsewhere(args, kind: str, given: dict):
    """A refusal (ValueError) to take the music ``given`` for ``kind`` (see api.refusal), with the
    checkpoints shipped with musicgan that take it named after its words."""
    from . import api, generate

    try:
        yield
    except ValueError as e:
        chosen = Path(args.checkpoint or generate.DEFAULT_CHECKPOINT).resolve()
        shipped = sorted(p.parent for p in generate.DEFAULT_CHECKPOINT.parent.glob("*/config.json"))
        able = api.takers(kind, {_shown(p): str(p) for p in shipped if p.resolve() != chosen}, **given)
        if not able:
            raise
        raise CliError(f"{e}. {' and '.join(able)} can {api.CAN[kind]}: give {'it' if len(able) == 1 else 'one'} "
                       f"as the checkpoint") from None


def _shown(path: Path) -> str:
    """``path`` relative to the working folder where it is inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _check_program(args) -> None:
    if args.program is not None and not 0 <= args.program <= 127:
        raise CliError("--program must be a General MIDI program number, 0-127")


def _write_piece(args, piece) -> int:
    """Write a piece made from the user's file (its given notes on a track of their own) to --out."""
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(piece.midi)
    print(f"{out}: {len(piece.roll.notes)} notes; {piece.description}")
    return 0


def cmd_add_harmoniser(args) -> int:
    from . import checkpoint as ckpt, harmonise
    from .batches import batches_for
    from .train import TrainConfig, device_label, pick_device

    if not Path(args.checkpoint).is_dir():
        raise CliError(f"{args.checkpoint}: a checkpoint folder (the harmoniser is added to it)")
    if not 0 < args.minutes <= 24 * 60:
        raise CliError("--minutes must be more than 0")
    model = ckpt.load(args.checkpoint)
    corpus = data_for(model, args.paths, not args.bars_as_written)
    device = pick_device(args.device)
    batches = batches_for(corpus.rolls, model.model, TrainConfig(), device)
    line = harmonise.NAMES[args.voice]
    print(f"training a harmoniser for a {line} for {args.minutes:g} minutes on {len(corpus.rolls)} pieces "
          f"({device_label(device)}) ...", flush=True)

    def progress(event):
        if not args.quiet and event["step"] % 200 == 0:
            print(f"  step {event['step']}: loss {event['loss']:.3f}", flush=True)

    h = harmonise.train_reader(model.generator, batches, minutes=args.minutes, seed=args.seed, voice=args.voice,
                               callback=progress, device=device)
    harmonise.save(args.checkpoint, h)
    print(f"{args.checkpoint}: harmoniser for a {line} added ({h.meta['steps']} steps, loss {h.meta['loss']}; "
          f"it draws with a parallels penalty of {h.meta['parallel_bias']:.2f} and a pitch temperature of "
          f"{h.meta['pitch_temperature']:.2f}"
          + (f", taking the voice above with a swap bias of {h.meta['swap_bias']:.2f}" if args.voice == "bottom" else "")
          + ", fitted to the music)")
    return 0


def cmd_recalibrate(args) -> int:
    from . import checkpoint as ckpt, form
    from .train import Budget, TrainConfig, Trainer

    if not Path(args.checkpoint).is_dir():
        raise CliError(f"{args.checkpoint}: a checkpoint folder (its sampling biases are fitted again in it)")
    model = ckpt.load(args.checkpoint)
    corpus = data_for(model, args.paths, not args.bars_as_written)
    config = TrainConfig.from_dict(model.meta.get("train") or {})
    trainer = Trainer(corpus.rolls, model=model.model, config=config, device="cpu", budget=Budget(steps=1))
    trainer.start_from(model)
    forms, parallels = trainer.forms(), trainer.parallels()
    habits = {name: trainer.data_meta.get(name) for name in ("ends", "opens", "entries")}
    repeats = "in none of its pieces" if forms is None else \
        f"{(forms >= 0).sum(1).mean():.1f} of the first {form.FORM_BARS} bars of a piece, on average"
    opens, entries = habits["opens"], habits["entries"]
    read = (f"phrases that come back: {repeats}; parallel fifths and octaves: {parallels:.2f} per 100 beats"
            + ("" if opens is None else f"; pieces opening with a pickup: {opens['pickup']:.0%}")
            + ("" if entries is None else f"; pieces whose voices come in one by one: {entries['share']:.0%}"))
    if args.music_only:
        ckpt.with_music(args.checkpoint, forms, parallels, habits)
        print(f"{args.checkpoint}: the forms, parallels, endings and openings of its music read ({read}); its weights "
              "and sampling biases are as they were")
        return 0
    print(f"fitting the sampling biases of {Path(args.checkpoint).name} on {len(corpus.rolls)} pieces ...", flush=True)
    gap = trainer.calibrate()
    # (a harmoniser keeps how it draws: fitted again on top of the interval bias, the chorale
    # model's harmonised melodies scored 0.576 against 0.551 as they were; docs/quality.md)
    ckpt.with_sampling(args.checkpoint, trainer.G, trainer.clamped)
    ckpt.with_music(args.checkpoint, forms, parallels, habits)
    print(f"{args.checkpoint}: sampling biases fitted again (onset rates within {gap:.3f} of the music's; "
          f"parallels penalty {float(trainer.G.parallel_bias):.2f}), and the forms, parallels, endings and openings of its music "
          f"read ({read}); its weights are as they were")
    return 0


def data_for(model, paths, find_pickups: bool = True):
    """The music at ``paths`` read on ``model``'s grid, in its pitch range and metres
    (``find_pickups``: see ``data.load``)."""
    from . import data

    corpus = data.load(paths, model.model.steps_per_beat, find_pickups=find_pickups)
    if not corpus.rolls:
        raise CliError("no usable MIDI in " + ", ".join(map(str, paths)))
    return corpus


def cmd_generate(args) -> int:
    from . import api, generate, keys, metre

    model = generate.load_model(args.checkpoint)
    tempo, program = generate.defaults(model)
    tempo = args.tempo or tempo
    program = program if args.program is None else args.program
    if not 0 <= program <= 127:
        raise CliError("--program must be a General MIDI program number, 0-127")
    seeds = [args.seed + i for i in range(args.num)]
    key = None
    if args.key:
        if not model.model.key_input:
            raise CliError("this model was trained without keys; --key needs a model trained with this version")
        key = keys.parse(args.key)
    chosen = metre.parse(args.metre) if args.metre else None
    pieces = api.compose_many(model, seeds, args.bars, tempo, program, args.temperature, key, chosen)
    out = Path(args.out)
    for i, piece in enumerate(pieces):
        roll = piece.roll
        path = out if args.num == 1 else out.with_name(f"{out.stem}-{i + 1}{out.suffix}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(piece.midi)
        print(f"{path}: {len(roll.notes)} notes; {piece.description}")
    return 0


def cmd_evaluate(args) -> int:
    from . import data, generate, metrics

    model = generate.load_model(args.checkpoint)
    reference = data.load(args.reference, find_pickups=not args.bars_as_written)
    if not reference.rolls:
        raise CliError("no usable reference MIDI")
    clips = data.clips(reference.rolls, args.bars)
    generated = generate.sample_rolls(model.generator, range(args.num), args.bars, **model.sampling)
    training = data.load(args.training, find_pickups=not args.bars_as_written).rolls if args.training else None
    result = metrics.evaluate(generated, clips, training)
    if args.json:
        print(json.dumps({"rows": result.rows, "two_sample_accuracy": result.two_sample,
                          "longest_copy_bars": result.copy_bars}, indent=2))
    else:
        print(f"{len(generated)} generated clips vs {len(clips)} reference clips of {args.bars} bars")
        print(result.format())
    return 0


MODEL_FLAGS = ("hidden", "layers")  # the model settings a new run may change


def add_bars_flag(p) -> None:
    p.add_argument("--bars-as-written", action="store_true",
                   help="count each file's bars from its first note, as written (by default a piece that opens "
                        "with a pickup its file does not mark is found, and its first bar made whole)")


def build_parser() -> argparse.ArgumentParser:
    from . import settings
    from .models import ModelConfig
    from .train import TrainConfig

    parser = argparse.ArgumentParser(prog="python -m musicgan", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("stats", help="report what a set of MIDI files, folders or zips contains")
    p.add_argument("paths", nargs="+", help="MIDI files, folders (searched recursively) or .zip archives")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--no-cache", action="store_true", help="parse every file again")
    add_bars_flag(p)
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("prepare", help="parse a large corpus once, in parallel, into shards for training")
    p.add_argument("paths", nargs="+")
    p.add_argument("--out", required=True, help="folder for the shards and their index")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--quiet", action="store_true")
    add_bars_flag(p)
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("train", help="train a model on MIDI files (or a prepared corpus folder)")
    p.add_argument("paths", nargs="+")
    p.add_argument("--out", required=True, help="checkpoint folder to write (and to resume from)")
    p.add_argument("--steps", type=int, help="training steps in all (default 2000 when no --minutes)")
    p.add_argument("--minutes", type=float, help="training time in all")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cuda, mps or cpu")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    p.add_argument("--start-from", metavar="CKPT",
                   help="fine-tune a trained model: a checkpoint, or 'pretrained' for the default model "
                        "(the music is read in that model's pitch range)")
    settings.add_flags(p, TrainConfig, group_title="training settings")
    settings.add_flags(p, ModelConfig, MODEL_FLAGS, group_title="model settings (a new model only)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_bars_flag(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("generate", help="write new music as MIDI")
    p.add_argument("checkpoint", nargs="?", help="checkpoint folder or .zip (default: the pretrained model)")
    p.add_argument("--out", required=True, help="the .mid file to write (with --num: FILE-1.mid ...)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bars", type=int, default=16)
    p.add_argument("--num", type=int, default=1)
    p.add_argument("--tempo", type=float, help="beats per minute (default: the training music's)")
    p.add_argument("--program", type=int, help="General MIDI program 0-127 (default: the training music's)")
    p.add_argument("--temperature", type=float, default=1.0, help="below 1: safer; above 1: wilder")
    p.add_argument("--key", help="e.g. 'D major' or 'F# minor' (default: drawn for each seed from the "
                                 "keys of the training music; models trained with key input only)")
    p.add_argument("--metre", help="e.g. '3/4' or '6/8', one the model knows (default: drawn for each seed "
                                   "from the metres of the training music)")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("continue", help="carry on from the opening of a MIDI file")
    p.add_argument("opening", help="a MIDI file: its first --opening-bars bars are the opening")
    p.add_argument("checkpoint", nargs="?", help="checkpoint folder or .zip (default: the pretrained model)")
    p.add_argument("--out", required=True, help="the .mid file to write")
    p.add_argument("--bars", type=int, default=8, help="bars to add")
    p.add_argument("--opening-bars", type=int, default=4, help="bars of the file the model reads first")
    p.add_argument("--only-new", action="store_true", help="write the continuation alone (default: the opening too)")
    _sound_flags(p, "the opening's")
    add_bars_flag(p)
    p.set_defaults(func=cmd_continue)

    p = sub.add_parser("harmonise", help="keep a melody (or a bass) and write the other voices")
    p.add_argument("melody", help="a MIDI file: a melody, or any music (its top line is the melody)")
    p.add_argument("--voice", choices=("top", "bottom"), default="top",
                   help="the line to keep: top (a melody, the default) or bottom (a bass: the file's lowest notes)")
    p.add_argument("checkpoint", nargs="?", help="checkpoint folder or .zip (default: the pretrained model)")
    p.add_argument("--out", required=True, help="the .mid file to write")
    _sound_flags(p, "the melody's")
    add_bars_flag(p)
    p.set_defaults(func=cmd_harmonise)

    p = sub.add_parser("add-harmoniser", help="train a model's harmoniser (the model itself stays as it is)")
    p.add_argument("checkpoint", help="checkpoint folder: the harmoniser is added to it")
    p.add_argument("paths", nargs="+", help="the music the model was trained on (MIDI files, folders, zips)")
    p.add_argument("--minutes", type=float, default=10.0, help="training time (default 10)")
    p.add_argument("--voice", choices=("top", "bottom"), default="top",
                   help="the line it is given: top (a melody, the default) or bottom (a bass)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cuda, mps or cpu")
    p.add_argument("--quiet", action="store_true")
    add_bars_flag(p)
    p.set_defaults(func=cmd_add_harmoniser)

    p = sub.add_parser("recalibrate", help="fit a model's sampling biases again on its training music "
                                           "(for a model trained before a bias was added; weights unchanged)")
    p.add_argument("checkpoint", help="checkpoint folder: its biases are replaced")
    p.add_argument("paths", nargs="+", help="the music the model was trained on (MIDI files, folders, zips)")
    p.add_argument("--music-only", "--forms-only", dest="music_only", action="store_true",
                   help="only read the forms of the music (which phrases come back; musicgan.form), its "
                        "parallel fifths and octaves, and how its pieces end and begin (musicgan.ending, "
                        "musicgan.upbeat): the sampling biases stay as they are")
    add_bars_flag(p)
    p.set_defaults(func=cmd_recalibrate)

    p = sub.add_parser("evaluate", help="compare generated music with real music")
    p.add_argument("checkpoint", nargs="?")
    p.add_argument("--reference", nargs="+", required=True, help="real music to compare with (held out)")
    p.add_argument("--training", nargs="+", help="the training music, for the copy check")
    p.add_argument("--num", type=int, default=200, help="clips to generate")
    p.add_argument("--bars", type=int, default=4, help="clip length")
    p.add_argument("--json", action="store_true")
    add_bars_flag(p)
    p.set_defaults(func=cmd_evaluate)
    return parser


def _sound_flags(p, whose: str) -> None:
    """--seed, --tempo, --program and --temperature of a command that starts from the user's file."""
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tempo", type=float, help=f"beats per minute (default: {whose})")
    p.add_argument("--program", type=int, help=f"General MIDI program 0-127 (default: {whose})")
    p.add_argument("--temperature", type=float, default=1.0, help="below 1: safer; above 1: wilder")


def main(argv=None) -> int:
    from .checkpoint import CheckpointError
    from .midi import MidiError
    from .train import DeviceError, TrainingError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CliError, CheckpointError, MidiError, DeviceError, TrainingError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
