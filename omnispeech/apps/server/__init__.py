"""``omnispeech serve``: the OpenAI audio API over HTTP (extra ``server``).

See :mod:`omnispeech.apps.server.app` for the routes; FastAPI is imported only when an app is
built, so importing this package needs nothing beyond the core install.
"""

from omnispeech.apps.server.app import ServerConfig, create_app, serve

__all__ = ["ServerConfig", "create_app", "serve"]
