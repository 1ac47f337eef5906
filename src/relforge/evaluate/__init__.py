"""relforge.evaluate"""
