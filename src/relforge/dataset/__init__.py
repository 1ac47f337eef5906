"""relforge.dataset"""
