"""edgesewer.runtime"""
