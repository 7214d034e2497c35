"""archival"""
