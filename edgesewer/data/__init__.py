"""edgesewer.data"""
