"""The CPU-heavy PEP 371 workload, shared by pep371.py (the table) and
pool_bench.py (the Pool rows): the sum of the primes below `limit`, by trial
division, as the Rust side's `crunch_primes` computes it."""


def crunch_primes(limit=100000):
    total = 0
    for n in range(2, limit):
        is_prime = True
        d = 2
        while d * d <= n:
            if n % d == 0:
                is_prime = False
                break
            d += 1
        if is_prime:
            total += n
    return total
