"""relforge.judge"""
