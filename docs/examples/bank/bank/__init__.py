"""A small bank: accounts, their balances and the closing of accounts left empty."""

from runtime import App

from .account import account
from .balances import balances
from .dormancy import dormancy

APP = App(aggregates=[account], projections=[balances], process_managers=[dormancy])
