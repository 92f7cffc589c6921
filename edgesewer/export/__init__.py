"""edgesewer.export"""
