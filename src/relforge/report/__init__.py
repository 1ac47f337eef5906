"""relforge.report"""
