"""The baseline every colorizer must beat: the gray image copied into R, G and B.

Not registered as a plugin (it trains nothing); tests and benchmarks/colorizer.py
score it with the colorizer metrics to show what a trained colorizer adds.
"""

from __future__ import annotations

from zoo import ColorizerPlugin, PluginInfo


class GrayCopy(ColorizerPlugin):
    info = PluginInfo(
        name="gray-copy", task="colorize", summary="baseline: gray copied into R, G and B"
    )

    def colorize(self, gray, colors=None):
        return gray.expand(-1, 3, -1, -1)
