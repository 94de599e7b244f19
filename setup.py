"""Which packages the distribution holds; everything else (metadata, dependencies, scripts) is in pyproject.toml.

It is here and not in pyproject.toml because pyproject's `packages.find` cannot map a folder onto another
package name: `models/` (the bundled models, at the top of the repository) is installed as the package
`bvae_desktop.bundled_models`, so importlib.resources finds the models in a wheel, in an editable install
(`pip install -e .`, what `make` does) and, through the PyInstaller spec's data, in the frozen app.
tests/packaging/test_package_data.py checks both the wheel and the editable install.
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=[
        *find_namespace_packages(include=["bvae_desktop", "bvae_desktop.*"], exclude=["*.__pycache__"]),
        "bvae_desktop.bundled_models",
    ],
    package_dir={"bvae_desktop.bundled_models": "models"},
    package_data={
        "bvae_desktop": ["resources/**/*"],
        "bvae_desktop.bundled_models": ["*.pt", "*.json", "README.md"],
    },
)
