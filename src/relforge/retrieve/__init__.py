"""relforge.retrieve"""
