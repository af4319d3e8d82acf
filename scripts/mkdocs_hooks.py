"""mkdocs hook: serve MathJax from the installed ``django-static-mathjax`` package (the docs extra), not a CDN.

Formulas then render with no network (a clone's ``mkdocs serve``, an offline copy of the built site). MathJax's
``tex-svg.js`` is one self-contained file (the fonts are SVG paths inside it), added to the site as
``javascripts/vendor/mathjax/tex-svg.js``, the path ``mkdocs.yml`` loads.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

SITE_PATH = "javascripts/vendor/mathjax/tex-svg.js"


def mathjax_source() -> Path:
    """The installed ``tex-svg.js`` (MathJax 3, ES5 build)."""
    try:
        import mathjax  # django-static-mathjax: MathJax's release files as package data
    except ImportError as err:
        raise PluginError('the docs need MathJax from django-static-mathjax: pip install -e ".[docs]"') from err
    path = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5" / "tex-svg.js"
    if not path.is_file():
        raise PluginError(f"MathJax's tex-svg.js is missing from the installed package: {path}")
    return path


def on_files(files: Files, config) -> Files:
    files.append(File.generated(config, SITE_PATH, abs_src_path=str(mathjax_source())))
    return files
