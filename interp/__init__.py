"""interp: interpolate between two real images with latent diffusion (Wang & Golland, 2023).

Importing the package loads no model and touches no network.
"""
__version__ = "0.1.0"
