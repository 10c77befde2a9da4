public enum DataModule {}
