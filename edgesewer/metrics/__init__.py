"""edgesewer.metrics"""
