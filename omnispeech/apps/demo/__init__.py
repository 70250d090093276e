"""``omnispeech demo``: the Gradio voice-cloning and transcription page (extra ``demo``).

Gradio is imported only when the page is built, so importing this package needs nothing
beyond the core install.
"""

from omnispeech.apps.demo.app import DemoConfig, build_demo, launch

__all__ = ["DemoConfig", "build_demo", "launch"]
