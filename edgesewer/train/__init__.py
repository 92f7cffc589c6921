"""edgesewer.train"""
