"""Spatial action-unit (AU) cues: codebook, landmark-based regions, map rendering, alignment loss.

Pure tensor code with no knowledge of methods, Ray or the CLI (see DESIGN.md): everything here
runs batched on whatever device the landmarks live on.
"""
from au.codebook import CLASS_NAMES, NEUTRAL, Codebook, get_codebook, CODEBOOKS
from au.render import render_au_maps
from au.align import layer_attention, map_cosine, alignment_loss

__all__ = [
    "CLASS_NAMES", "NEUTRAL", "Codebook", "get_codebook", "CODEBOOKS",
    "render_au_maps", "layer_attention", "map_cosine", "alignment_loss",
]
