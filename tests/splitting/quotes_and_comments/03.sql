SELECT U&'d\0061t\+000061;', B'1010', X'1F', N'national;' ;
