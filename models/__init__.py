"""The bundled models (NAME.pt beside its card NAME.json), installed as `bvae_desktop.bundled_models`.

Not code: this file makes the folder a package so importlib.resources finds it wherever the app is
installed. Read the models through `bvae_desktop.core.model_zoo`.
"""
