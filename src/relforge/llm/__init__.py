"""relforge.llm"""
