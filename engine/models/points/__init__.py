"""LION-style hierarchical latent point diffusion (model `points`).

A VAE maps a point cloud to a global shape latent and a set of point-structured latents
(xyz + a few features per latent point); two latent diffusion priors (global, then points
conditioned on global) generate those latents; the decoder turns them into a clean surface.
Networks live in ``vae.py``, ``global_prior.py``, ``point_prior.py``; sampling in
``sampler.py``; checkpoint I/O in ``model.py``; training in ``train.py``.
"""
