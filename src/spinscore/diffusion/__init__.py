"""Riemannian diffusion on (S^2)^N: forward process, loss, likelihood, sampling."""
