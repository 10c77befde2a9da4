public enum DistModule {}
