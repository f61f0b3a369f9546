"""Harmonising a melody (or a bass): it stays note for note as the top voice (or the lowest); the
other voices hear all of it."""
import dataclasses
import io
import shutil
import subprocess
import sys

import mido
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from musicgan import api, checkpoint as ckpt, generate, harmonise, metre, midi, voices
from musicgan.batches import batches_for
from musicgan.models import LineReader
from musicgan.train import TrainConfig

from conftest import EXAMPLES, ROOT, make_midi, meta, off, on, pickup_rest


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "musicgan", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)

MELODY = ROOT / "examples" / "melodies" / "old-hundredth.mid"


@pytest.fixture(scope="module")
def model():
    return api.load_model()


@pytest.fixture(scope="module")
def with_reader(model, tmp_path_factory):
    """The pretrained model with a harmoniser trained for a few steps on the example chorales."""
    folder = tmp_path_factory.mktemp("harmoniser") / "model"
    shutil.copytree(model.path, folder)
    rolls = [midi.read(p, model.model.steps_per_beat) for p in EXAMPLES[:8]]
    batches = batches_for(rolls, model.model, TrainConfig(), torch.device("cpu"))
    torch.set_num_threads(2)
    for voice in harmonise.VOICES:
        harmonise.save(folder, harmonise.train_reader(model.generator, batches, steps=40, batch_size=16, seed=0,
                                                      voice=voice))
    return ckpt.load(folder)


def melody_notes(notes):
    """(pitch, start, end) of each note."""
    return notes[:, :3]


@pytest.mark.parametrize("source", [MELODY, EXAMPLES[9]], ids=["a melody", "the top line of a chorale"])
@pytest.mark.parametrize("reader", [False, True], ids=["clamped", "conditioned"])
def test_the_melody_comes_out_note_for_note_as_the_top_voice(model, with_reader, source, reader):
    checkpoint = with_reader if reader else dataclasses.replace(model, harmonisers={})  # (clamped)
    piece = api.compose_harmonisation(checkpoint, source, seed=4, audio=False)
    line = harmonise.line_of(checkpoint.generator, midi.read(source, checkpoint.model.steps_per_beat)).roll
    line = line.later(-pickup_rest(piece.roll))  # (a pickup: the piece written from it, in a short first bar)
    roll = midi.read(piece.midi, checkpoint.model.steps_per_beat)
    tracks = mido.MidiFile(file=io.BytesIO(piece.midi)).tracks
    names = [next((m.name for m in t if m.type == "track_name"), None) for t in tracks[1:]]
    assert names == ["given", "musicgan"]  # the melody keeps a track of its own
    assert np.array_equal(melody_notes(piece.roll.notes[piece.given]), melody_notes(line.notes))  # note for note
    if source == MELODY:  # a file that is all melody: every note of it
        assert np.array_equal(melody_notes(line.notes), melody_notes(midi.read(MELODY).later(-pickup_rest(piece.roll)).notes))
    assert len(line.notes) > 20 and (~piece.given).sum() > 2 * len(line.notes)  # voices below it, written
    drawn = piece.roll.notes[~piece.given]
    assert (drawn[:, 0] <= line.notes[:, 0].max()).mean() > 0.95  # ... below it
    source_roll = midi.read(source)
    assert roll.time_signatures == source_roll.time_signatures and roll.n_steps >= source_roll.n_steps
    assert roll.tempo_bpm == pytest.approx(source_roll.tempo_bpm, rel=0.01)


@pytest.mark.parametrize("reader", [False, True], ids=["clamped", "conditioned"])
def test_a_bass_comes_out_note_for_note_as_the_lowest_voice(model, with_reader, reader):
    checkpoint = with_reader if reader else dataclasses.replace(model, harmonisers={})  # (clamped)
    source = EXAMPLES[9]
    piece = api.compose_harmonisation(checkpoint, source, seed=4, audio=False, voice="bottom")
    line = harmonise.line_of(checkpoint.generator, midi.read(source, checkpoint.model.steps_per_beat), "bottom").roll
    # (bwv306: a one-beat pickup, written as a whole first bar, 15 bars, and a short last bar; the
    # harmonisation written from its pickup, in a bar of 1/4)
    assert ("clamped" in piece.description) != reader and "a bass line of 17 bars" in piece.description
    assert piece.roll.time_signatures[0][1:] == (1, 4) and pickup_rest(piece.roll) == 8
    line = line.later(-pickup_rest(piece.roll))
    assert np.array_equal(melody_notes(piece.roll.notes[piece.given]), melody_notes(line.notes))
    T = piece.roll.n_steps
    lowest, bass = np.full(T, 1000), np.full(T, -1)
    for pitch, start, end, _ in piece.roll.notes.tolist():
        lowest[start:end] = np.minimum(lowest[start:end], pitch)
    for pitch, start, end, _ in line.notes.tolist():
        bass[start:end] = pitch
    assert (bass >= 0).mean() > 0.8 and np.array_equal(lowest[bass >= 0], bass[bass >= 0])  # nothing under it
    # voices above it, written (the chorale has 2.4 notes above each bass note; drawn ones, 1.9 to 3)
    assert (~piece.given).sum() > 1.5 * len(line.notes)
    roll = midi.read(piece.midi)
    assert roll.time_signatures == midi.read(source).time_signatures


@pytest.mark.parametrize("voice", harmonise.VOICES)
def test_a_line_that_opens_with_a_rest_begins_and_ends_the_piece(model, voice):
    """A melody whose pickup is written as a rest before it (a whole first bar, as the chorales are
    exported), or a bass that comes in late: no voice plays before the line's first note, or after
    its last; the line comes out note for note, a bar and two beats later than in the file."""
    notes = [(67, 2), (67, 1), (69, 1), (71, 2), (69, 2), (67, 4), (72, 2), (71, 2), (69, 4)] if voice == "top" else \
        [(43, 2), (48, 2), (45, 2), (50, 2), (43, 4), (40, 2), (45, 2), (38, 4)]
    events, wait = [(0, meta("time_signature", numerator=4, denominator=4))], 6 * 480  # a bar and two beats
    for pitch, beats in notes:
        events += [(wait, on(pitch)), (beats * 480, off(pitch))]
        wait = 0
    data = make_midi([events])
    piece = api.compose_harmonisation(dataclasses.replace(model, harmonisers={}), data, seed=1, audio=False,
                                      voice=voice)
    line = piece.roll.notes[piece.given]
    assert line[:, 0].tolist() == [p for p, _ in notes] and line[0, 1] == 6 * 4  # note for note, in place
    drawn = piece.roll.notes[~piece.given]
    assert len(drawn) > len(notes)  # the other voices, written
    assert drawn[:, 1].min() >= line[0, 1] and drawn[:, 2].max() <= line[:, 2].max()
    assert "7 bars" in piece.description  # (the rest: a bar and a half; the line: five bars, to the last bar line)


def test_the_bass_a_reader_learns_from_is_the_bass_read_from_a_file():
    """Training reads the bass from the voices (the lowest one that sounds); harmonising reads it
    from the file (its lowest notes): the two must be the same line, token for token."""
    for path in EXAMPLES[:6]:
        roll = midi.read(path, 4)
        onset, sustain = roll.pianoroll(0, 127, roll.n_steps)
        by_voices, _ = harmonise.bottom_line(torch.from_numpy(voices.encode(onset, sustain, 5))[None])
        assert np.array_equal(by_voices[0].numpy(), voices.encode(onset, sustain, 1)[:, 0])


def test_the_teachers_counts_on_beats_worked_out_by_hand():
    """Parallels between beats (only between beats sounding as many notes, parts read top down),
    non-chord tones on strong beats and notes above a melody, counted on beats written out."""
    from musicgan import voiceleading

    def roll(*beats):  # each beat's pitches, a note a beat (4 steps); (None,): every note of the beat before held on
        notes, last = [], []
        for b, pitches in enumerate(beats):
            if pitches == (None,):
                for i in last:
                    notes[i][2] += 4
                continue
            last = list(range(len(notes), len(notes) + len(pitches)))
            notes += [[p, 4 * b, 4 * b + 4, 80] for p in pitches]
        return midi.Roll(midi._sorted_notes(np.array(notes, np.int32).reshape(-1, 4)), length=4 * len(beats))

    # C-G up to D-A (a fifth), then to E-B (another), then contrary to G-C (a fourth): 2 parallels
    assert voiceleading.parallel_count(roll((67, 60), (69, 62), (71, 64), (72, 67))) == (2, 4)
    # octaves, two octaves apart, falling together: 1; held (not moved): none; a third voice joining: not compared
    assert voiceleading.parallel_count(roll((84, 60), (83, 59))) == (1, 2)
    assert voiceleading.parallel_count(roll((67, 60), (None,))) == (0, 2)
    assert voiceleading.parallel_count(roll((67, 60), (69, 65, 62))) == (0, 2)
    # one moving and one held a fifth below it is oblique motion, not parallel
    assert voiceleading.parallel_count(roll((67, 60), (69, 60))) == (0, 2)
    # in three parts, top and bottom a fifth apart moving up a step together, the middle still: 1
    assert voiceleading.parallel_count(roll((67, 64, 60), (69, 64, 62))) == (1, 2)
    # strong beats of 4/4: beats 1 and 3; C-E-G-B-flat fits the dominant seventh, C-D-E has one outside
    assert voiceleading.non_chord_tones(roll((60, 64, 67, 70), (61, 63), (60, 62, 64), (50,))) == (1, 7)
    # a note above the melody on 1 beat of 4
    assert voiceleading.above_melody(roll((72, 60), (74, 62), (71,), (72, 60)), roll((72,), (72,), (71,), (72,))) == 25.0


def test_of_the_critics_candidates_one_nearest_the_musics_parallels_is_taken(model):
    """Under a melody in sixteenths, two voices a fifth apart on each beat move in parallel from
    beat to beat, which the model's step-by-step penalty never sees: of the candidates offered,
    the first (in the critic's order) of those nearest the parallels the music has in as many
    beats is taken."""
    from musicgan import voiceleading

    def candidate(fifths: bool) -> midi.Roll:
        melody = [[72 + (i % 4), i, i + 1, 80] for i in range(32)]  # (sixteenths, 2 bars of 4/4)
        lower = [[60 + 2 * b, 4 * b, 4 * b + 4, 80] for b in range(8)]
        other = [[(53 if fifths else 57) + 2 * b - (0 if fifths else 2 * (b % 2)), 4 * b, 4 * b + 4, 80] for b in range(8)]
        return midi.Roll(midi._sorted_notes(np.array(melody + lower + other, np.int32)))
    with_fifths, without = candidate(True), candidate(False)
    n, beats = voiceleading.parallel_count(with_fifths)
    assert beats == 8 and n >= 4 and voiceleading.parallels(without) == 0
    rolls = [with_fifths, without, without].__getitem__
    for seed in range(20):
        # music with fewer than n / 2 parallels in 8 beats (none: the fewest first)
        for rate in (0.0, 100 * (n / 2 - 1) / beats - 0.1):
            assert generate.parallels_first([0, 1, 2], rolls, rate, seed) == [1, 2, 0]
            assert generate.parallels_first([2, 0, 1], rolls, rate, seed) == [2, 1, 0]  # (each distance's in the critic's order)
        assert generate.parallels_first([1, 0], [with_fifths, with_fifths].__getitem__, 0.0, seed) == [1, 0]
        for rate in (100 * n / beats, 100.0):  # music with as many or more: the candidate with them
            assert generate.parallels_first([1, 2, 0], rolls, rate, seed) == [0, 1, 2]
        assert generate.parallels_first([1, 2, 0], rolls, None, seed) == [1, 2, 0]  # a model that does not say
    # a share of 0.37 parallels in a piece is 1 in 37% of seeds and 0 in the rest
    shares = [generate.parallels_share(3.7, 10, seed) for seed in range(2000)]
    assert set(shares) == {0, 1} and abs(np.mean(shares) - 0.37) < 0.04
    # a reel harmonised by the chorale model: never more such parallels than the critic's own
    # first choice, and fewer in all
    reel = ROOT / "examples" / "tunes" / "ryansMammoth-7thRegimentReel.mid"

    def counts():
        return [voiceleading.parallels(api.compose_harmonisation(model, reel, seed=s, audio=False).roll) for s in range(8)]
    with pytest.MonkeyPatch.context() as patch:  # (the ending's choice aside: no candidate closes)
        patch.setattr(harmonise, "sounds_tonic", lambda *args: False)
        patch.setattr(harmonise, "ENDING_ROUNDS", 0)
        taken = counts()
        patch.setattr(harmonise, "parallels_first", lambda order, roll_of, rate, seed: order)
        critics = counts()
    assert model.parallels is not None
    assert all(a <= b for a, b in zip(taken, critics)) and sum(taken) < 0.8 * sum(critics), (taken, critics)


def test_the_same_melody_model_and_seed_give_the_same_bytes(with_reader):
    first = api.compose_harmonisation(with_reader, MELODY, seed=2, audio=False)
    again = api.compose_harmonisation(with_reader, MELODY.read_bytes(), seed=2, audio=False)
    other = api.compose_harmonisation(with_reader, MELODY, seed=3, audio=False)
    assert first.midi == again.midi and first.midi != other.midi


def test_a_harmoniser_leaves_the_models_own_pieces_as_they_were(model, with_reader):
    """The reader is an add-on: the same seed writes the same piece with and without it, and a reader
    that has learnt nothing (its output layer is zero) harmonises exactly as clamping does."""
    assert api.compose(model, seed=3, bars=4, audio=False).midi == api.compose(with_reader, seed=3, bars=4, audio=False).midi
    melody = harmonise.line_of(model.generator, midi.read(MELODY, model.model.steps_per_beat))
    untrained = LineReader(model.model, 16).eval()
    clamped = harmonise.harmonise_rolls(model.generator, melody, [1])[0]
    read = harmonise.harmonise_rolls(model.generator, melody, [1], untrained)[0]
    assert np.array_equal(clamped.notes, read.notes)
    trained = harmonise.harmonise_rolls(model.generator, melody, [1], with_reader.harmonisers["top"])[0]
    assert not np.array_equal(clamped.notes, trained.notes)


def anticipating(n: int, seed: int) -> list:
    """Two-voice pieces where the lower voice, on each beat, already plays the melody's next note
    an octave down: a voice that hears the melody only up to now can but guess."""
    rng = np.random.default_rng(seed)
    rolls = []
    for _ in range(n):
        tune = rng.integers(60, 72, 17)
        notes = [(p, 4 * k, 4 * k + 4, 80) for k in range(16) for p in (tune[k], tune[k + 1] - 12)]
        rolls.append(midi.Roll(notes=np.array(notes, dtype=np.int32), steps_per_beat=4))
    return rolls


def test_the_reader_hears_the_melody_still_to_come():
    """The reader's whole point: with the melody read backwards, a voice can anticipate it. A small
    model of the pieces above, trained by likelihood (clamping alone: no reader), then given a
    reader trained with the model frozen: on new pieces the lower voice's loss falls by half."""
    from musicgan.models import ModelConfig
    from musicgan.train import Budget, Trainer

    cfg = ModelConfig(voices=2, pitch_low=44, pitch_high=75, latent_dim=8, embed_dim=8, hidden=32, layers=1,
                      d_hidden=16, d_embed=16)
    trainer = Trainer(anticipating(40, 0), cfg, TrainConfig(warmup=1.0, batch_size=16, transpose=0, window_bars=2),
                      device="cpu", budget=Budget(steps=150))
    trainer.run()
    G = trainer.G.eval()
    config = TrainConfig(transpose=0, window_bars=2)
    reader = harmonise.train_reader(G, batches_for(anticipating(40, 0), cfg, config, torch.device("cpu")),
                                    steps=600, batch_size=16, hidden=32).reader
    batch = batches_for(anticipating(20, 1), cfg, config, torch.device("cpu")).draw(64, torch.Generator().manual_seed(0))
    z = G.condition(torch.randn(64, cfg.latent_dim), batch.keys)
    codes = batch.codes.clamp(min=0)
    with torch.no_grad():
        h = G.hidden_states(batch.tokens, z, codes)

        def loss(extra):
            logits = G.head_logits(h, batch.tokens, extra)[:, :, 1:]
            return F.cross_entropy(logits.reshape(-1, cfg.vocab), batch.tokens[:, :, 1:].reshape(-1)).item()

        plain, read = loss(None), loss(reader(batch.tokens[..., 0], codes))
    assert read < 0.5 * plain, (read, plain)


def test_a_harmoniser_fits_its_own_parallels_penalty_and_pitch_temperature(with_reader):
    """Harmonisations draw differently from free pieces: each reader fits its own parallels penalty
    and pitch temperature (saved with it), toward the music's rates of parallels and of seconds,
    tritones and sevenths. From no penalty at all, the fit brings the draws' parallels toward the
    chorales'; and a temperature fitted to their dissonance brings that toward the chorales' too."""
    from musicgan.models import parallel_rate

    model = ckpt.load(with_reader.path)
    G = model.generator
    batches = batches_for([midi.read(p, G.cfg.steps_per_beat) for p in EXAMPLES[:8]], model.model, TrainConfig(),
                          torch.device("cpu"))
    for voice, reader in model.harmonisers.items():  # kept in the checkpoint
        setting = model.meta[ckpt.READERS[voice][0]]
        assert (reader.parallel_bias, reader.pitch_temperature) == (setting["parallel_bias"],
                                                                    setting["pitch_temperature"])
    reader = model.harmonisers["top"]
    G.parallel_bias.fill_(0.0)
    fitted, temperature, swap = harmonise.fit_sampling(G, reader, "top", batches, clips=96)
    assert swap == 0.0  # (a melody: no bass to swap)
    assert fitted > 0.5 and temperature != 1.0
    batch = batches.draw(96, torch.Generator().manual_seed(5))
    codes, line = batch.codes.clamp(min=0), batch.tokens[..., 0]
    noise = [generate.noise_for(i, batch.tokens.shape[1], G.cfg) for i in range(96)]
    z = G.condition(torch.stack([n[0] for n in noise]), batch.keys)

    def rates(beta, temperature):
        with torch.no_grad():
            drawn, _ = G.sample(z, torch.stack([n[1] for n in noise]), codes, extra=reader(line, codes),
                                parallel_bias=beta, pitch_temperature=temperature,
                                **harmonise._fixed(line, "top", G.cfg.voices))
        (n, steps), (d, pairs) = parallel_rate(drawn), harmonise.dissonance_rate(drawn)
        return n / steps, d / pairs

    (n, steps), (d, pairs) = parallel_rate(batch.tokens), harmonise.dissonance_rate(batch.tokens)
    fit, plain, unsharpened = rates(fitted, temperature), rates(0.0, temperature), rates(fitted, 1.0)
    assert abs(fit[0] - n / steps) < abs(plain[0] - n / steps)
    assert abs(fit[1] - d / pairs) < abs(unsharpened[1] - d / pairs), (fit, unsharpened, d / pairs)


def test_the_dissonance_rate_counts_the_pairs_heard_as_a_chord_arrives():
    P = lambda p: voices.FIRST_PITCH + p  # noqa: E731
    H, R = voices.HOLD, voices.REST
    tokens = np.array([[[P(12), P(7), P(0)],     # a fifth, an octave and a fourth: none dissonant
                        [H, H, H],               # nothing struck: not counted
                        [P(11), H, H],           # a major seventh over the bass, a third over the middle
                        [H, P(6), R],            # one pair: a fourth (11 - 6)
                        [P(25), P(23), H]]])     # a held rest is silent: a second, 25 - 23
    assert harmonise.dissonance_rate(tokens) == (2, 8)


def test_sharpened_pitches_keep_the_odds_of_striking_a_note():
    from musicgan.models import sharpen_pitches

    logits = torch.randn(6, 40, generator=torch.Generator().manual_seed(0))
    sharp = sharpen_pitches(logits, 0.5)
    p, q = logits.softmax(-1), sharp.softmax(-1)
    first = voices.FIRST_PITCH
    assert torch.allclose(p[:, :first], q[:, :first], atol=1e-6)  # rest and hold as they were
    assert torch.allclose(p[:, first:].sum(-1), q[:, first:].sum(-1), atol=1e-6)
    assert torch.equal(p[:, first:].argmax(-1), q[:, first:].argmax(-1))
    assert (q[:, first:].max(-1).values > p[:, first:].max(-1).values).all()  # the likeliest pitch likelier
    assert torch.allclose(sharpen_pitches(logits, 1.0).softmax(-1), p, atol=1e-6)


def test_the_fast_and_the_step_by_step_sampler_agree_with_a_reader(with_reader):
    G = with_reader.generator
    melody = midi.read(MELODY, G.cfg.steps_per_beat)
    given_line = harmonise.line_of(G, melody)
    line_roll, line = given_line.roll, given_line.tokens
    T = len(line)
    codes = torch.from_numpy(G.cfg.step_codes(line_roll.time_signatures, T))[None]
    given = torch.full((1, T, G.cfg.voices), -1)
    given[0, :, 0] = torch.from_numpy(line)
    from musicgan.generate import noise_for
    z, noise = noise_for(5, T, G.cfg)
    z = G.condition(z[None], torch.tensor([7]))
    with torch.no_grad():
        extra = with_reader.harmonisers["top"](given[..., 0], codes)
    for temperature in (1.0, 0.7):  # (a harmoniser's pitch temperature)
        with torch.no_grad():
            fast, _ = G.sample(z, noise[None], codes, given=given, extra=extra, pitch_temperature=temperature)
        with torch.enable_grad():
            slow, _ = G.sample(z, noise[None], codes, given=given, extra=extra, pitch_temperature=temperature)
        assert torch.equal(fast[..., 0], given[..., 0]) and torch.equal(slow[..., 0], given[..., 0])
        assert (fast == slow).float().mean() > 0.9


@pytest.mark.parametrize("voice", ["top", "bottom"])
def test_a_harmonisation_drawn_in_parts_is_the_harmonisation_drawn_in_one(with_reader, voice):
    # (what lets a harmonisation's last bar be drawn again from where the rest stands)
    G = with_reader.generator
    line = harmonise.line_of(G, midi.read(EXAMPLES[0], G.cfg.steps_per_beat), voice)
    tokens = torch.from_numpy(line.tokens)
    T = len(tokens)
    codes = torch.from_numpy(G.cfg.step_codes(line.roll.time_signatures, T)).clamp(min=0)[None].expand(2, -1)
    fixed = {name: v[None].expand(2, *v.shape)
             for name, v in harmonise._within(harmonise._fixed(tokens, voice, G.cfg.voices), tokens, G.cfg.voices).items()}
    reader = with_reader.harmonisers[voice]
    with torch.no_grad():
        extra = reader(tokens[None], codes[:1]).expand(2, -1, -1)
    z = G.condition(torch.randn(2, G.cfg.latent_dim, generator=torch.Generator().manual_seed(0)), torch.tensor([3, 3]))
    noise = torch.randn(2, T, G.cfg.voices, G.cfg.vocab, generator=torch.Generator().manual_seed(1))
    how = {"parallel_bias": 1.5, "pitch_temperature": 0.8, "swap_bias": 0.5 if voice == "bottom" else 0.0}
    with torch.no_grad():
        whole, _ = G.sample(z, noise, codes, extra=extra, **fixed, **how)
    cut, given, bass = T // 2 + 3, fixed.get("given"), fixed.get("bass")
    first, state = G.draw_on(G.begin(z), noise[:, :cut], codes[:, :cut], given=None if given is None else given[:, :cut],
                             extra=extra[:, :cut], bass=None if bass is None else bass[:, :cut], **how)
    rest, _ = G.draw_on(state, noise[:, cut:], codes[:, cut:], given=None if given is None else given[:, cut:],
                        extra=extra[:, cut:], bass=bass, **how)
    assert torch.equal(torch.cat([first, rest], 1), whole)
    if bass is not None:  # (a bass is given from the piece's first step)
        with pytest.raises(ValueError, match="first step"):
            G.draw_on(state, noise[:, cut:], codes[:, cut:], bass=bass[:, cut:], **how)


def test_a_melody_the_model_cannot_take_gets_a_message(model, tmp_path):
    wide = make_midi([[(0, on(30)), (480, off(30)), (0, on(100)), (480, off(100))]])
    with pytest.raises(ValueError, match="this model plays 33 to 93, and no whole octave up or down brings"):
        api.compose_harmonisation(model, wide, audio=False, voice="bottom")
    with pytest.raises(midi.MidiError):
        api.compose_harmonisation(model, b"MThd not really", audio=False)
    five = make_midi([[(0, meta("time_signature", numerator=5, denominator=4)), (0, on(60)), (480, off(60))]])
    with pytest.raises(ValueError, match="the melody is in 5/4; this model knows 4/4"):
        api.compose_harmonisation(model, five, audio=False)


def test_a_melody_in_2_2_is_read_in_the_models_4_4_and_written_back_in_2_2(model):
    """A hymn in cut time to a model that knows 4/4: the same bars, so the same music, in its own metre."""
    melody = midi.read(MELODY)
    assert melody.time_signatures[0][1:] == (4, 4) and model.model.metres == ((4, 4), (3, 4))
    cut_time = dataclasses.replace(melody, time_signatures=((0, 2, 2),))
    for voice in ("top", "bottom"):
        as_written = api.compose_harmonisation(model, melody, seed=2, voice=voice, audio=False)
        read_as = api.compose_harmonisation(model, cut_time, seed=2, voice=voice, audio=False)
        assert np.array_equal(read_as.roll.notes, as_written.roll.notes)
        assert read_as.roll.time_signatures == ((0, 2, 2),) and "(its 2/2 read as 4/4)" in read_as.description
        assert "read as" not in as_written.description
        assert midi.read(read_as.midi).time_signatures == ((0, 2, 2),)
    mixed = dataclasses.replace(melody, time_signatures=((0, 4, 4), (32, 2, 2)))  # (4/4 to bar 3, then 2/2)
    read_as = api.compose_harmonisation(model, mixed, seed=2, audio=False)
    assert np.array_equal(read_as.roll.notes, api.compose_harmonisation(model, melody, seed=2, audio=False).roll.notes)
    assert read_as.roll.time_signatures == ((0, 4, 4), (32, 2, 2)) and "(its 2/2 read as 4/4)" in read_as.description
    in_5_8 = dataclasses.replace(melody, time_signatures=((0, 5, 8),))
    with pytest.raises(ValueError, match="the melody is in 5/8; this model knows 4/4, 3/4"):
        api.compose_harmonisation(model, in_5_8, audio=False)


def test_a_melody_in_2_4_or_6_4_is_read_in_bars_of_the_models_4_4_or_3_4_and_written_back(model):
    """Two bars of 2/4 as one of 4/4, a bar of 6/4 as two of 3/4: the same music as the melody
    barred so by hand, its pickup leading into the model's bar line as into its own, written back."""
    melody = midi.read(MELODY)  # (4/4, opening on its bar line)
    # (its metre, its pickup's rest, what it is read as and its rest, the words)
    for own, rest, known, read_rest, words in (((2, 4), 4, (4, 4), 12, "its 2/4 read as 4/4, two bars as one"),
                                               ((6, 4), 20, (3, 4), 8, "its 6/4 read as 3/4, a bar as two")):
        given = dataclasses.replace(melody, time_signatures=((0, *own),)).later(rest)
        by_hand = api.compose_harmonisation(model, dataclasses.replace(melody, time_signatures=((0, *known),))
                                            .later(read_rest), seed=2, audio=False)
        piece = api.compose_harmonisation(model, given, seed=2, audio=False)
        # (each written from its pickup, in a short first bar: read back, the pickup's bar is whole again)
        read, by_hand_read = midi.read(piece.midi), midi.read(by_hand.midi)
        assert piece.roll.time_signatures == ((0, 1, 4), (metre.bar_steps(own, 4) - rest, *own))  # (a beat's pickup)
        assert np.array_equal(read.notes, by_hand_read.later(rest - read_rest).notes)
        assert np.array_equal(piece.given, by_hand.given) and piece.given.sum() == len(melody.notes)
        assert read.time_signatures == ((0, *own),) and f"({words})" in piece.description
        bar = metre.bar_steps(own, read.steps_per_beat)  # (it ends with the bar its last note is in)
        whole = piece.roll.n_steps + pickup_rest(piece.roll)  # (counted with its pickup's bar whole)
        assert whole == -(-int(read.notes[:, 2].max()) // bar) * bar


def test_a_line_above_or_below_the_models_range_is_read_whole_octaves_into_it(model):
    """Read by the fewest octaves that bring it in, and moved back: the same music as the line
    moved by hand, the given line note for note, the voices around it in its octave."""
    melody = midi.read(MELODY)  # (MIDI 62 to 74; the model plays 33 to 93)
    for moved_by, read_at, words in ((24, 12, "an octave lower"), (-36, -24, "an octave higher")):
        moved = melody.transpose(moved_by)
        assert not model.model.pitch_low <= moved.notes[:, 0].min() <= moved.notes[:, 0].max() <= model.model.pitch_high
        by_hand = api.compose_harmonisation(model, melody.transpose(read_at), seed=2, audio=False)
        piece = api.compose_harmonisation(model, moved, seed=2, audio=False)
        assert np.array_equal(piece.roll.notes, by_hand.roll.transpose(moved_by - read_at).notes)
        assert np.array_equal(piece.given, by_hand.given)
        assert f"(read {words}, in this model's range)" in piece.description
        assert "read" not in by_hand.description


def test_a_checkpoint_with_a_broken_harmoniser_is_refused(with_reader, tmp_path):
    import json

    folder = tmp_path / "broken"
    shutil.copytree(with_reader.path, folder)
    config = json.loads((folder / "config.json").read_text())
    config["harmoniser"]["hidden"] = 3
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ckpt.CheckpointError, match="harmoniser"):
        ckpt.load(folder)
    config["harmoniser"]["hidden"] = with_reader.meta["harmoniser"]["hidden"]
    config["bass_harmoniser"]["pitch_temperature"] = 0
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ckpt.CheckpointError, match="bass_harmoniser.pitch_temperature is not a temperature"):
        ckpt.load(folder)


def test_cli_adds_a_harmoniser_and_harmonises(model, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(model.path, folder)
    result = run_cli("add-harmoniser", folder, *EXAMPLES[:3], "--minutes", "0.05", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "harmoniser for a melody added" in result.stdout and "pitch temperature of" in result.stdout
    assert set(ckpt.load(folder).harmonisers) == {"top", "bottom"}
    out = tmp_path / "harmonised.mid"
    result = run_cli("harmonise", MELODY, folder, "--out", out, "--seed", "3", "--program", "19")
    assert result.returncode == 0, result.stderr
    assert "harmonised" in result.stdout and "clamped" not in result.stdout
    roll = midi.read(out)
    assert roll.program == 19 and len(roll.notes) > 2 * len(midi.read(MELODY).notes)
    bass = tmp_path / "bass.mid"
    result = run_cli("harmonise", EXAMPLES[9], folder, "--voice", "bottom", "--out", bass, "--seed", "3")
    assert result.returncode == 0, result.stderr
    assert "a bass line of" in result.stdout and "clamped" not in result.stdout  # (the pretrained model's bass reader)
    assert len(midi.read(bass).notes) > 2 * len(harmonise.line_of(model.generator, midi.read(EXAMPLES[9]), "bottom").roll.notes)
    result = run_cli("harmonise", tmp_path / "missing.mid", "--out", out)
    assert result.returncode == 1 and "Traceback" not in result.stderr


def test_the_swap_bias_follows_the_musics_number_of_voices():
    """Fitting how readily a given bass takes the voice above one that falls silent: raised while
    harmonisations sound more voices than the music where the bass sounds, lowered while fewer,
    by at most 1.5 a round, within +-6; too few steps to count: left alone."""
    from musicgan.voices import FIRST_PITCH as P, HOLD, REST

    tokens = torch.tensor([[[P + 9, P + 5, P], [HOLD, REST, HOLD], [REST, REST, REST]]])  # 3 voices, 2, none
    line = tokens[..., -1]
    assert harmonise.voices_heard(tokens, line) == (5.0, 2)  # (the silent step is not the bass's)
    real = (800.0, 200)  # 4 voices a step
    assert harmonise.swap_move(0.0, real, (900.0, 200)) == 1.0  # half a voice too many
    assert harmonise.swap_move(0.0, real, (1000.0, 200)) == 1.5
    assert harmonise.swap_move(-1.0, real, (700.0, 200)) == -2.0
    assert harmonise.swap_move(-5.5, real, (400.0, 200)) == -harmonise.SWAP_LIMIT
    assert harmonise.swap_move(0.5, real, (100.0, 50)) == 0.5


def test_a_model_without_a_harmoniser_clamps_as_its_trainer_fitted(tmp_path, monkeypatch):
    """A model from the Train tab has no harmoniser: it clamps the line. Its trainer fits how
    clamping draws (a parallels penalty and a pitch temperature) for a melody and for a bass; the
    checkpoint keeps them, a resumed run keeps them, and harmonising with the model uses them."""
    import json

    from musicgan.train import Budget, Trainer, model_config_for

    rolls = [midi.read(p, 4) for p in EXAMPLES[:8]]
    model = model_config_for(rolls, transpose=1, latent_dim=8, embed_dim=8, hidden=32, layers=1, d_hidden=16,
                             d_embed=16)
    config = TrainConfig(batch_size=8, window_bars=2, transpose=1, warmup=1.0)
    trainer = Trainer(rolls, model, config, device="cpu", budget=Budget(steps=3))
    trainer.run()
    trainer.save(tmp_path / "m")
    loaded = ckpt.load(tmp_path / "m")
    assert not loaded.harmonisers and set(loaded.clamped) == {"top", "bottom"}
    assert loaded.clamped == {v: (s["parallel_bias"], s["pitch_temperature"], s.get("swap_bias", 0.0))
                              for v, s in trainer.clamped.items()}
    assert "swap_bias" in trainer.clamped["bottom"] and "swap_bias" not in trainer.clamped["top"]
    resumed = Trainer(rolls, model, config, device="cpu", budget=Budget(steps=3))
    resumed.restore(ckpt.load(tmp_path / "m", with_discriminator=True))
    assert resumed.clamped == trainer.clamped

    drawn = []
    real = harmonise.harmonise_rolls
    monkeypatch.setattr(harmonise, "harmonise_rolls", lambda *a, **k: drawn.append(k.get("clamped")) or real(*a, **k))
    for voice in harmonise.VOICES:
        piece = api.compose_harmonisation(loaded, MELODY, seed=1, audio=False, voice=voice)
        assert "clamped" in piece.description
    assert drawn == [loaded.clamped["top"], loaded.clamped["bottom"]]

    config_path = tmp_path / "m" / "config.json"
    settings = json.loads(config_path.read_text())
    settings["sampling"]["clamped"]["top"]["pitch_temperature"] = "cold"
    config_path.write_text(json.dumps(settings))
    with pytest.raises(ckpt.CheckpointError, match="sampling.clamped"):
        ckpt.load(tmp_path / "m")
