"""relforge.generate"""
