print("distcheck")
