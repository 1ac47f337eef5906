"""relforge.train"""
