"""The development benchmark of several styles: does the model write music like the music it learned?

    python bench/styles.py [--minutes 15] [--styles bach fiddle trecento quartets] [--out runs/styles]
    python bench/styles.py --evaluate-only --out runs/styles        # score the models trained before
    python bench/styles.py --styles madrigals folk --minutes 3      # music nothing here was tuned on

The four collections of ``python -m musicgan.datasets all data/styles`` (built when missing):
Bach chorales, fiddle tunes (one line; 2/4, 4/4, 6/8 ...), trecento polyphony (two and three
voices, ternary metres) and string quartets (four instruments, wide range, fast notes). For each:

1. train the project on the training split with its defaults for ``--minutes`` on 2 CPU
   threads, as ``python -m musicgan train`` does;
2. generate ``--pieces`` pieces of 16 bars as the app makes them (the critic's choice, the copy
   guard, each seed's own key and metre), and cut them into 4-bar clips of their own bars;
3. score three rows against 4-bar clips of the held-out split: the training split itself (the
   real-vs-real floor), an order-2 Markov chain over the model's voice tokens (written in the
   music's commonest metre), and the project.

Printed per style: the two-sample accuracy (mean over ``--splits`` random splits; 0.50: a
classifier cannot tell the clips from held-out ones), the listener's statistics (polyphony rate,
notes per beat, pitch classes and range per clip, scale consistency, onsets on downbeats, groove
consistency), the metres written and the notes a beat in each (with the held-out music's at the
model's metres: a style's metres differ in density several times over), how the onsets fall over the bar against the music's
(correlation), and the copy check (the longest run of bars found verbatim in the training split,
and the share of clips with 2 bars or more), and of whole pieces (the 16-bar pieces made, and the
first 16 bars of the held-out and training pieces; results.json also has all of their bars) the
share of bars that repeat one of the 8 before them note for note (``metrics.repeated_bars``: a
phrase that comes back, which no 4-bar clip shows) and the voice leading a teacher marks
(:mod:`musicgan.voiceleading`: parallel fifths and octaves, non-chord tones on strong beats)
and how they end (:func:`endings`: on the tonic chord or not, and for how long it sounds) and
begin (:func:`musicgan.upbeat.habit`: with a pickup or not, and how long it is), with the
two-sample accuracy of the pieces' first 4 bars and last 4 bars against the held-out pieces' own
first and last 4 (a 4-bar clip cut from anywhere seldom holds either).
``--forms``: the forms the pieces take
(:mod:`musicgan.form`). ``--entries``: how the pieces' voices come in (:func:`musicgan.upbeat.entering`:
one by one as often as the music's do): as the model's checkpoint says, read from the training
split, or all at once. The summary lists the statistics within 10% of the
held-out music's, and in brackets those that miss it but are within 10% of the training split's
(where the two splits differ and the model writes what it learned). Results go to OUT/results.json.

The three collections of ``python -m musicgan.datasets unseen data/unseen`` (Monteverdi's
madrigals, O'Neill's folk tunes, various pieces) are held out whole: no default was chosen on
them. Named in ``--styles``, each trains on ``--train-pieces`` of its pieces (20 when not given:
a visitor's files), taken evenly by name, and is scored on all the others, as above.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from musicgan import checkpoint as ckpt, data, ending, form, generate, keys, metre, metrics, upbeat, voiceleading, voices  # noqa: E402
from musicgan.batches import window_config  # noqa: E402
from musicgan.datasets import COLLECTIONS, UNSEEN  # noqa: E402
from musicgan.heldout import HeldOut  # noqa: E402
from musicgan.train import Budget, TrainConfig, Trainer, default_width, model_config_for  # noqa: E402
from quality import MarkovChain  # noqa: E402

CLIP_BARS = 4
PIECE_BARS = 16  # the pieces made, and the openings of the music they are compared with
MAX_CLIPS = 400  # per side of a comparison, drawn evenly from each set


def spread(clips: list, n: int = MAX_CLIPS) -> list:
    """At most ``n`` clips, taken evenly across the list (the same ones every run)."""
    if len(clips) <= n:
        return clips
    return [clips[i] for i in np.linspace(0, len(clips) - 1, n).astype(int)]


def unseen_split(folder: Path, n: int) -> tuple[list[Path], list[Path]]:
    """A collection nothing learns from (``musicgan.datasets.UNSEEN``: every piece held out): ``n``
    of its pieces, taken evenly across it by name, to train on as a visitor would, and the rest."""
    files = sorted((folder / "test").glob("*.mid"))
    train = spread(files, n)
    return train, [f for f in files if f not in train]


def train(rolls, minutes: float, out: Path, seed: int = 0, lr_mle: float = 0.0, batch_size: int = 0,
          dropout: float = 0.0, transpose: int = TrainConfig.transpose, **model_settings) -> dict:
    """As ``python -m musicgan train`` does (the model's settings from the music and the budget;
    ``lr_mle`` and ``batch_size`` 0: the trainer's choice)."""
    config = TrainConfig(seed=seed, lr_mle=lr_mle, batch_size=batch_size, dropout=dropout, transpose=transpose)
    budget = Budget(minutes=minutes)
    model = model_config_for(rolls, transpose=config.transpose, **{
        "hidden": default_width(torch.device("cpu"), budget), **model_settings}) if model_settings else None
    trainer = Trainer(rolls, model, config, device="cpu", budget=budget)
    t0 = time.time()
    trainer.run()
    trainer.save(out)
    return {"steps": trainer.step_count, "adversarial_from": trainer.adversarial_from,
            "minutes": round((time.time() - t0) / 60, 1), "lr_mle": trainer.config.lr_mle,
            "batch_size": trainer.config.batch_size, "dropout": trainer.config.dropout,
            "transpose": trainer.config.transpose, "pieces": len(rolls)}


def held_out_loss(model: ckpt.Checkpoint, rolls) -> float | None:
    """The model's teacher-forced loss on windows of held-out pieces (:class:`musicgan.heldout.HeldOut`:
    as written, in its pitch range and metres): how well it predicts music of its style it has not seen."""
    held = HeldOut([r.on_grid(model.model.steps_per_beat) for r in rolls], model.model, TrainConfig(),
                   torch.device("cpu"))
    return round(held.loss(model.generator, contextlib.nullcontext()), 4) if held.windows else None


def project_pieces(model: ckpt.Checkpoint, n: int, bars: int = 16, ending: bool = True, opening: bool = True) -> list:
    """Pieces as the app makes them (tempo and instrument aside; ``ending``: closing on the tonic
    chord, :mod:`musicgan.ending`; ``opening``: with a pickup as often as the music, its voices
    coming in as the music's do, :mod:`musicgan.upbeat`)."""
    return generate.sample_rolls(model.generator, range(n), bars, ending=ending, opening=opening, **model.sampling)


DEGREES = ("1", "b2", "2", "b3", "3", "4", "#4", "5", "b6", "6", "b7", "7")


def endings(rolls) -> dict:
    """How whole pieces end (:func:`musicgan.ending.ends_closed`, each in the key estimated from
    its notes alone, as a listener hears the body of it): the share whose last chord is the tonic
    chord, the median beats that chord sounds for, and the shares of the degrees of that key the
    piece ends on (its final, :func:`musicgan.keys.final`: a madrigal in G Dorian, heard as D minor,
    ends on "4"). Where a model ends as its music does, its finals' degrees are shared as the
    music's (:func:`finals_apart`)."""
    ends = [ending.ends_closed(r) for r in rolls]
    finals = np.bincount([(keys.final(r.notes) - keys.estimate(r.notes)) % 12 for r in rolls if len(r.notes)],
                         minlength=12) / max(sum(len(r.notes) > 0 for r in rolls), 1)
    return {"on the tonic chord": float(np.mean([e[0] for e in ends])),
            "last chord (beats)": float(np.median([e[1] for e in ends])),
            "final's degree": {DEGREES[d]: round(float(finals[d]), 3) for d in range(12) if finals[d]}}


def finals_apart(a: dict, b: dict) -> float:
    """How differently two sets of pieces' finals fall on the degrees (:func:`endings`): the total
    variation distance of the two shares, 0 (alike) to 1."""
    return 0.5 * sum(abs(a.get(d, 0.0) - b.get(d, 0.0)) for d in DEGREES)


def opening(roll, bars: int):
    """The first ``bars`` bars of a roll (all of it when it is shorter)."""
    spans = metre.bar_spans(roll.time_signatures, roll.n_steps, roll.steps_per_beat)
    return data.cut(roll, 0, spans[min(bars, len(spans)) - 1][1]) if spans else roll


def closing_bars(roll, bars: int):
    """The last ``bars`` bars of a roll (all of it when it is shorter), to where it ends."""
    spans = metre.bar_spans(roll.time_signatures, roll.n_steps, roll.steps_per_beat)
    start = spans[-min(bars, len(spans))][0] if spans else 0
    return data.cut(roll, start, roll.n_steps - start)


def with_forms(model: ckpt.Checkpoint, how: str, train_rolls) -> ckpt.Checkpoint:
    """The model with the forms ``how`` says: "saved" (its own: a model trained before forms has
    none), "train" (read from the training split, as training reads them now) or "none"."""
    if how == "saved":
        return model
    return dataclasses.replace(model, forms=form.build(r.on_grid(model.model.steps_per_beat) for r in train_rolls)
                               if how == "train" else None)


def with_entries(model: ckpt.Checkpoint, how: str, train_rolls) -> ckpt.Checkpoint:
    """The model with its voices coming in as ``how`` says: "saved" (its own: a model trained
    before entries were read has them all come in at once), "train" (read from the training split,
    as training reads them now) or "none" (all at once). The generator is a copy."""
    if how == "saved":
        return model
    generator = copy.deepcopy(model.generator)
    generator.entering = upbeat.entering(train_rolls, model.model.voices) if how == "train" else None
    return dataclasses.replace(model, generator=generator)


def with_parallels(model: ckpt.Checkpoint, train_rolls) -> ckpt.Checkpoint:
    """The model with the parallels of its music (a model trained before they were counted has
    none: they are counted here as training counts them)."""
    if model.parallels is not None:
        return model
    sampling = {**model.meta.get("sampling", {}), "parallels": round(voiceleading.pooled_parallels(train_rolls), 3)}
    return dataclasses.replace(model, meta={**model.meta, "sampling": sampling})


def markov_clips(model: ckpt.Checkpoint, rolls, n: int, seed: int = 0) -> list:
    cfg = model.model
    windows = data.Windows(rolls, window_config(cfg, TrainConfig(transpose=0)))
    chain = MarkovChain(voices.window_tokens(windows, cfg.pitch_low, cfg.voices))
    main = cfg.metres[0]
    steps = CLIP_BARS * cfg.bar_steps(main)
    rng = np.random.default_rng(seed)
    return [voices.decode(chain.sample(steps, rng), cfg.pitch_low, steps_per_beat=cfg.steps_per_beat,
                          time_signatures=((0, *main),)) for _ in range(n)]


def density_by_metre(clips: list) -> dict:
    """Notes a beat of the clips in each metre (their first time signature's): a style's metres
    differ several times over (a quartet's 2/4 movements strike 6.7 notes a beat, its 2/2 ones
    3.3), so a model that writes more of one metre than the music's bars hold reads as denser or
    sparser in all when it is not within any."""
    by: dict = {}
    for clip in clips:
        by.setdefault(metre.name(metre.metre_at(clip.time_signatures, 0)), []).append(metrics.notes_per_beat(clip))
    return {name: round(float(np.mean(v)), 3) for name, v in sorted(by.items())}


def at_metres(density: dict, shares: dict) -> float | None:
    """Notes a beat of music with ``density`` (:func:`density_by_metre`) in the metres ``shares``
    (:func:`musicgan.metrics.metres_written`) of another set: the held-out music at a model's
    metres. None where the model writes a metre the music lacks."""
    if not shares or any(name not in density for name in shares):
        return None
    return float(sum(density[name] * share for name, share in shares.items()) / sum(shares.values()))


def score(clips: list, reference: list, training_rolls, splits: int, copies: bool = True) -> dict:
    clips = spread(clips)
    out = {"clips": len(clips), "two_sample": metrics.two_sample_accuracy(clips, spread(reference), splits=splits),
           **metrics.summary(clips, metrics.LISTENER), "metres": metrics.metres_written(clips),
           "notes per beat by metre": density_by_metre(clips),
           "profile_correlation": metrics.profile_correlation(clips, reference)}
    out.pop("duration histogram", None)
    if copies:
        runs = np.array(metrics.copy_runs(clips, training_rolls))
        out.update(longest_copy=int(runs.max()), copy_2bar_share=float((runs >= 2).mean()))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=15.0, help="training budget per style")
    parser.add_argument("--styles", nargs="+", default=list(COLLECTIONS), choices=[*COLLECTIONS, *UNSEEN],
                        help="collections (default: the four models are tuned on). Music nothing is tuned on "
                             "(madrigals, folk, various: every piece held out) trains on --train-pieces of its pieces "
                             "(20 when not given), taken evenly by name, and is scored on the rest")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "styles")
    parser.add_argument("--unseen", type=Path, default=ROOT / "data" / "unseen", help="where the unseen collections are")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "styles")
    parser.add_argument("--pieces", type=int, default=100, help="generated pieces of 16 bars per style")
    parser.add_argument("--splits", type=int, default=5, help="random splits the two-sample accuracy is averaged over")
    parser.add_argument("--evaluate-only", action="store_true")
    parser.add_argument("--hidden", type=int, help="the generator's width (default: the project's choice)")
    parser.add_argument("--lr-mle", type=float, default=0.0, help="the likelihood learning rate (default: the trainer's choice)")
    parser.add_argument("--batch-size", type=int, default=0, help="training windows a step (default: the trainer's choice)")
    parser.add_argument("--forms", choices=("saved", "train", "none"), default="saved",
                        help="the forms pieces take (musicgan.form): the model's own (the default), read from the "
                             "training split (for a model trained before forms), or none (every bar drawn)")
    parser.add_argument("--train-pieces", type=int, default=0,
                        help="train on this many pieces of the training split, taken evenly across it (0: all): "
                             "a visitor's twenty files. The floor, the Markov chain and the copy check use them too")
    parser.add_argument("--dropout", type=float, default=0.0,
                        help="the share of the generator's LSTM outputs the likelihood phase drops (TrainConfig.dropout)")
    parser.add_argument("--transpose", type=int, default=TrainConfig.transpose,
                        help="augment the likelihood loss with shifts of up to N semitones (TrainConfig.transpose)")
    parser.add_argument("--no-pitch-memory", action="store_true",
                        help="a generator without the pitch-class memory input (the ablation)")
    parser.add_argument("--no-ending", action="store_true",
                        help="pieces that end where their last bar runs out, as before musicgan.ending")
    parser.add_argument("--no-opening", action="store_true",
                        help="pieces that all begin on their first downbeat, as before musicgan.upbeat")
    parser.add_argument("--entries", choices=("saved", "train", "none"), default="saved",
                        help="how the pieces' voices come in (musicgan.upbeat.entering): as the model's own music's "
                             "(the default), read from the training split (for a model trained before entries), "
                             "or all at once")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)  # the budget is "2 CPU cores", whatever this machine has

    results = json.loads((args.out / "results.json").read_text()) if (args.out / "results.json").exists() else {}
    for style in args.styles:
        folder = (args.unseen if style in UNSEEN else args.data) / style
        if not (folder / ("test" if style in UNSEEN else "train")).exists():
            from musicgan import datasets
            datasets.main([style, str(folder)])
        if style in UNSEEN:
            train_paths, test_paths = unseen_split(folder, args.train_pieces or 20)
        else:
            train_paths, test_paths = [folder / "train"], [folder / "test"]
        # (the collections' bars are the scores': musicgan.datasets writes each pickup as a rest before it)
        train_rolls = data.load(train_paths, "auto", find_pickups=False).rolls  # on the grid the music needs
        if args.train_pieces and style not in UNSEEN:
            train_rolls = spread(train_rolls, args.train_pieces)
        test_rolls = data.load(test_paths, find_pickups=False).rolls  # held-out music is compared on the grid of 4 steps a beat
        out = args.out / style
        row = results.get(style, {})
        if not args.evaluate_only:
            print(f"{style}: training on {len(train_rolls)} pieces for {args.minutes:g} min ...", flush=True)
            row["training"] = train(train_rolls, args.minutes, out, lr_mle=args.lr_mle, batch_size=args.batch_size,
                                    dropout=args.dropout, transpose=args.transpose,
                                    **({"hidden": args.hidden} if args.hidden else {}),
                                    **({"pitch_memory": False} if args.no_pitch_memory else {}))
        model = with_parallels(with_entries(with_forms(ckpt.load(out), args.forms, train_rolls), args.entries,
                                            train_rolls), train_rolls)
        reference = data.clips(test_rolls, CLIP_BARS)
        train4 = [r.on_grid(4) for r in train_rolls]
        pieces = [p.on_grid(4) for p in project_pieces(model, args.pieces, PIECE_BARS, not args.no_ending,
                                                       not args.no_opening)]
        known = set(metre.bars_per_metre(train_rolls))
        row.update({
            "model": {"voices": model.model.voices, "parallels": model.parallels, "metres": [metre.name(m) for m in model.model.metres],
                      "pitches": [model.model.pitch_low, model.model.pitch_high], "steps": model.steps},
            "held_out_loss": held_out_loss(model, data.load(test_paths, "auto", find_pickups=False).rolls),
            "pieces_in_a_training_metre": float(np.mean([metre.metre_at(p.time_signatures, 0) in known for p in pieces])),
            "held-out": {**metrics.summary(spread(reference), metrics.LISTENER),
                         "metres": metrics.metres_written(reference), "clips": len(reference),
                         "notes per beat by metre": density_by_metre(spread(reference))},
            "real (train split)": score(data.clips(train4, CLIP_BARS), reference, train4, args.splits, False),
            "Markov chain (order 2)": score([c.on_grid(4) for c in markov_clips(model, train_rolls, len(reference))],
                                            reference, train4, args.splits),
            "musicgan": score(data.clips(pieces, CLIP_BARS), reference, train4, args.splits),
        })
        # of whole pieces, not clips: the 16-bar pieces made, and the held-out and training pieces'
        # first 16 bars (and all of them)
        for label, whole in (("held-out", test_rolls), ("real (train split)", train4), ("musicgan", pieces)):
            row[label]["repeated bars"] = float(np.mean([metrics.repeated_bars(opening(r, PIECE_BARS)) for r in whole]))
            row[label]["voice leading"] = voiceleading.summary([opening(r, PIECE_BARS) for r in whole])
            row[label]["endings"] = endings(whole)
            row[label]["openings"] = upbeat.habit(whole)
            if label != "musicgan":
                row[label]["repeated bars (whole pieces)"] = float(np.mean([metrics.repeated_bars(r) for r in whole]))
        # the first and last bars of whole pieces against the held-out pieces' own (a pickup and
        # what it leads to; a cadence and the last chord)
        held = [r.on_grid(4) for r in test_rolls]
        for name, cut in (("first", opening), ("last", closing_bars)):
            row["musicgan"][f"{name} 4 bars"] = metrics.two_sample_accuracy(
                [cut(p, CLIP_BARS) for p in pieces], [cut(r, CLIP_BARS) for r in held], splits=args.splits)
        row["held-out"].pop("duration histogram", None)
        results[style] = row
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(results, indent=2))
        print_style(style, row)
    print_summary(results)
    return 0


STATS = list(metrics.LISTENER)
SHORT = {"polyphony rate": "poly", "notes per beat": "n/beat", "pitch classes": "pcs", "scale consistency": "scale",
         "onsets on downbeats": "downbt", "range (semitones)": "range", "groove consistency": "groove"}


def print_style(style: str, row: dict) -> None:
    m = row["model"]
    print(f"\n{style} ({m['voices']} voices, metres {', '.join(m['metres'])}, {m['steps']} steps; "
          f"{row['held-out']['clips']} held-out clips of {CLIP_BARS} bars)")
    print(f"{'':<24}{'2-sample':>9}" + "".join(f"{SHORT[s]:>8}" for s in STATS) + f"{'profile':>8}{'copy':>6}{'>=2':>7}{'repeat':>8}")
    for label in ("held-out", "real (train split)", "Markov chain (order 2)", "musicgan"):
        r = row[label]
        two = f"{r['two_sample']:.3f}" if "two_sample" in r else ""
        prof = f"{r['profile_correlation']:.2f}" if "profile_correlation" in r else ""
        copy = f"{r['longest_copy']}" if "longest_copy" in r else ""
        share = f"{r['copy_2bar_share']:.1%}" if "copy_2bar_share" in r else ""
        repeat = f"{r['repeated bars']:.3f}" if "repeated bars" in r else ""
        print(f"{label:<24}{two:>9}" + "".join(f"{r[s]:>8.3f}" for s in STATS) + f"{prof:>8}{copy:>6}{share:>7}"
              f"{repeat:>8}")
    print("parallel fifths and octaves per 100 beats, non-chord tones on strong beats (whole pieces): " + "; ".join(
        f"{label} {row[label]['voice leading']['parallels_per_100_beats']:.2f}, "
        f"{row[label]['voice leading']['non_chord_tones_strong']:.3f}"
        for label in ("held-out", "real (train split)", "musicgan") if "voice leading" in row[label]))
    print("endings (whole pieces; on the tonic chord, its beats): " + "; ".join(
        f"{label} {row[label]['endings']['on the tonic chord']:.0%}, {row[label]['endings']['last chord (beats)']:g}"
        for label in ("held-out", "real (train split)", "musicgan") if "endings" in row[label]))
    finals = {label: row[label]["endings"].get("final's degree") for label in ("held-out", "real (train split)", "musicgan")
              if "endings" in row[label]}
    if all(finals.values()) and "musicgan" in finals:
        top = {label: sorted(shares.items(), key=lambda ds: -ds[1])[:3] for label, shares in finals.items()}
        print("finals, on degrees of the key of the notes: " + "; ".join(
            f"{label} " + ", ".join(f"{d} {v:.0%}" for d, v in top[label]) for label in finals)
            + f"; musicgan's apart from the held-out music's: {finals_apart(finals['musicgan'], finals['held-out']):.2f}")
    opens = {label: row[label].get("openings") for label in ("held-out", "real (train split)", "musicgan")}
    if all(opens.values()):
        print("openings (whole pieces; with a pickup, its beats by metre): " + "; ".join(
            f"{label} {o['pickup']:.0%}, " + ", ".join(f"{m} {b:g}" for m, b in list(o["beats"].items())[:3])
            for label, o in opens.items()) + f"; first {CLIP_BARS} bars' two-sample: {row['musicgan']['first 4 bars']:.3f}"
            + (f", last {CLIP_BARS}: {row['musicgan']['last 4 bars']:.3f}" if "last 4 bars" in row["musicgan"] else ""))
    dense = {label: row[label].get("notes per beat by metre") for label in ("held-out", "musicgan")}
    if all(dense.values()):
        level = at_metres(dense["held-out"], row["musicgan"]["metres"])
        print("notes a beat by metre, held-out / musicgan: " + ", ".join(
            f"{name} {dense['held-out'].get(name, float('nan')):.2f} / {v:.2f}" for name, v in dense["musicgan"].items())
            + ("" if level is None else f"; the held-out music at musicgan's metres: {level:.2f}"))
    print(f"metres written: held-out {row['held-out']['metres']}; musicgan {row['musicgan']['metres']}; "
          f"pieces in a metre of the training music: {row['pieces_in_a_training_metre']:.0%}; "
          f"loss on the held-out pieces: {row.get('held_out_loss')}")


def print_summary(results: dict) -> None:
    print(f"\n{'style':<10}{'floor':>7}{'Markov':>8}{'musicgan':>9}{'gap':>6}   within 10% of the held-out music"
          " [not, but of the training split's]")
    for style, row in results.items():
        if "musicgan" not in row:
            continue
        floor, ours = row["real (train split)"]["two_sample"], row["musicgan"]["two_sample"]
        close, learned = within(row["musicgan"], row["held-out"]), within(row["musicgan"], row["real (train split)"])
        split = [s for s in learned if s not in close]  # where the two splits differ, not the model
        print(f"{style:<10}{floor:>7.3f}{row['Markov chain (order 2)']['two_sample']:>8.3f}{ours:>9.3f}"
              f"{ours - floor:>6.2f}   {', '.join(close)}" + (f" [{', '.join(split)}]" if split else ""))


def within(stats: dict, reference: dict, share: float = 0.1) -> list[str]:
    """The short names of the listener's statistics (texture, rhythm, harmony, range) on which
    ``stats`` is within ``share`` of ``reference``."""
    return [SHORT[s] for s in STATS[:6] if reference[s] and abs(stats[s] - reference[s]) <= share * abs(reference[s])]


if __name__ == "__main__":
    sys.exit(main())
