"""The ``omnispeech`` command line: a thin click layer over the public API.

Subcommands import torch and the models inside their bodies, so ``omnispeech --help`` is fast.
"""

from __future__ import annotations

import click

from omnispeech import __version__
from omnispeech.cli.align import align
from omnispeech.cli.asr import asr
from omnispeech.cli.chat import chat
from omnispeech.cli.codec import codec
from omnispeech.cli.data import data
from omnispeech.cli.demo import demo
from omnispeech.cli.eval import eval_
from omnispeech.cli.serve import serve
from omnispeech.cli.train import train
from omnispeech.cli.tts import tts
from omnispeech.cli.vocode import vocode


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="omnispeech")
def main() -> None:
    """omnispeech: streaming speech modules of the Qwen3-Omni family.

    \b
    Examples:
      omnispeech asr talk.wav
      omnispeech asr talk.wav --timestamps
      omnispeech align talk.wav "What the recording says."
      omnispeech asr talk.wav --model ./Qwen3-ASR-0.6B
      omnispeech asr a.flac b.ogg --model ./Qwen3-ASR-0.6B --language en --format json
      omnispeech tts "Hello there." --clone me.wav -o hello.wav --model ./Qwen3-TTS-12Hz-0.6B-Base
      omnispeech codec encode voice.wav -o voice.npz --model ./Qwen3-TTS-Tokenizer-12Hz
      omnispeech chat "Tell me a joke." -m ./Qwen3-Omni-30B-A3B-Instruct -o joke.wav
      omnispeech vocode codes.npz -o speech.wav --model ./Qwen3-TTS-Tokenizer-12Hz
      omnispeech train codec -c recipes/codec/cpu_demo.json --train corpus/train -o runs/codec
      omnispeech eval codec held_out/ --model runs/codec/model
      omnispeech demo --tts-model ./Qwen3-TTS-12Hz-0.6B-Base --asr-model ./Qwen3-ASR-0.6B
      omnispeech serve --tts-model ./Qwen3-TTS-12Hz-0.6B-Base --asr-model ./Qwen3-ASR-0.6B

    Run `omnispeech COMMAND --help` for the options of a command.
    """


main.add_command(asr)
main.add_command(align)
main.add_command(tts)
main.add_command(chat)
main.add_command(codec)
main.add_command(vocode)
main.add_command(train)
main.add_command(eval_, name="eval")
main.add_command(data)
main.add_command(demo)
main.add_command(serve)
