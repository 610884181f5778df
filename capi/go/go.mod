module lowbit

go 1.19
