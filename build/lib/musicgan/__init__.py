"""musicgan: learn from your own MIDI files with a recurrent GAN and generate new music.

Data flows one way: files -> :mod:`midi` (Roll) -> :mod:`data` (windows) -> :mod:`train`
(:mod:`models`) -> :mod:`checkpoint` -> :mod:`generate` -> :mod:`render` (MIDI, audio, image).
"""

__version__ = "0.1.0"
