"""relforge.pipeline"""
