public enum TrainModule {}
