// MathJax configuration for pymdownx.arithmatex (generic mode), as in the mkdocs-material docs, and for the
// notebooks' markdown cells (mkdocs-jupyter: $...$ and $$...$$ inside .jupyter-wrapper; code is skipped).
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true,
    processEnvironments: true
  },
  options: {
    ignoreHtmlClass: ".*|",
    processHtmlClass: "arithmatex|jupyter-wrapper"
  }
};

document$.subscribe(() => {
  MathJax.startup.output.clearCache()
  MathJax.typesetClear()
  MathJax.texReset()
  MathJax.typesetPromise()
})
