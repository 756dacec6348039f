print("a probe script written for this test")
